"""What the harness starts and loads: the matrix's pairs and the floors.

A floor (``[floors.*]`` in ``matrix.toml``) is a framework-like entry: an app, its
interface kind and the servers it runs on. It becomes a :class:`lab.matrix.Pair` like any
framework, so its command line comes from the same server registry; ``commands`` replaces a
server's template where the template names no app (aiohttp's own launcher).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lab import matrix
from lab.experiments import Experiment, Variant
from lab.experiments import experiment as find_experiment
from lab.experiments import experiments as all_experiments
from lab.scenarios import matrix_table

__all__ = [
    "Floor",
    "Target",
    "experiment_targets",
    "floor_of",
    "floor_refs",
    "floors",
    "select_targets",
]


@dataclass(frozen=True, slots=True)
class Floor:
    name: str
    doc: str
    floor_of: str  # "server" (a raw callable) | "framework" (a framework's hello world)
    kind: str
    app: str
    servers: tuple[str, ...]
    framework: str | None = None
    commands: dict[str, str] = field(default_factory=dict)
    scenarios: tuple[str, ...] = ("json", "plaintext")  # the routes it serves
    services: bool = False  # needs PostgreSQL (a hello world's /db)

    def pair(self, server_name: str) -> matrix.Pair:
        srv = matrix.server(server_name)
        if server_name in self.commands:
            srv = replace(srv, command=self.commands[server_name])
        return matrix.Pair(matrix.Framework(self.name, self.kind, self.app, self.servers), srv)


@dataclass(frozen=True, slots=True)
class Target:
    """One app on one server: a pair of the matrix, or a floor."""

    pair: matrix.Pair
    role: str  # "pair" | "floor" | "variant" (of a technique experiment)
    floor: Floor | None = None
    experiment: Experiment | None = None
    variant: Variant | None = None

    @property
    def id(self) -> str:
        if self.experiment is not None and self.variant is not None:
            return f"{self.experiment.name}~{self.variant.name}"
        return self.pair.id

    @property
    def workers(self) -> int | None:
        """The variant's worker count, or None for the run's."""
        return self.variant.workers if self.variant is not None else None

    @property
    def server_cpus(self) -> tuple[int, ...]:
        """The experiment's server CPUs, or () for the run's."""
        return self.experiment.server_cpus if self.experiment is not None else ()

    @property
    def app_name(self) -> str:
        return self.pair.framework.name

    @property
    def server(self) -> str:
        return self.pair.server.name

    @property
    def kind(self) -> str:
        return self.pair.framework.kind

    @property
    def framework(self) -> str | None:
        """The framework measured: the pair's, a hello floor's, or None for a raw floor."""
        if self.floor is None:
            return self.pair.framework.name
        return self.floor.framework

    @property
    def needs_services(self) -> bool:
        return self.role in {"pair", "variant"} or (self.floor is not None and self.floor.services)


def floors() -> tuple[Floor, ...]:
    return tuple(
        Floor(
            name,
            spec.get("doc", ""),
            spec["floor_of"],
            spec["kind"],
            spec["app"],
            tuple(spec["servers"]),
            spec.get("framework"),
            dict(spec.get("commands", {})),
            tuple(spec.get("scenarios", ("json", "plaintext"))),
            bool(spec.get("services", False)),
        )
        for name, spec in matrix_table("floors").items()
    )


def floor_targets() -> list[Target]:
    return [Target(f.pair(s), "floor", f) for f in floors() for s in f.servers]


def select_targets(
    frameworks: tuple[str, ...] = (),
    servers: tuple[str, ...] = (),
    *,
    with_floors: bool = True,
    floor_roles: tuple[str, ...] = ("server", "framework"),
) -> list[Target]:
    """The pairs chosen by the filters and the floors that serve as their references: a
    floor runs when a chosen pair uses its server and it is that pair's framework floor or
    the raw floor of its interface kind (``floor_roles`` narrows to either). Naming a floor
    in ``frameworks`` selects it too.

    Run order: server by server, each pair followed at once by the floors it is read against
    (its hello world, then the raw callable unless an earlier pair on that server brought
    it), then any floor named on its own. A ratio divides two numbers measured seconds
    apart, not minutes: this machine's speed drifts on the scale of minutes."""
    floor_names = {f.name for f in floors()}
    pair_filter = tuple(f for f in frameworks if f not in floor_names)
    known = {f.name for f in matrix.frameworks()} | floor_names
    unknown = [f for f in frameworks if f not in known]
    if unknown:
        raise KeyError(f"unknown framework {unknown[0]!r}; known: {', '.join(sorted(known))}")
    chosen_pairs: list[Target] = []
    if not frameworks or pair_filter:
        chosen_pairs = [Target(p, "pair") for p in matrix.pairs(pair_filter, servers)]
    named_floors = {f for f in frameworks if f in floor_names}
    chosen_floors = []
    for target in floor_targets():
        assert target.floor is not None
        if servers and target.server not in servers:
            continue
        if target.floor.name in named_floors or (
            with_floors
            and target.floor.floor_of in floor_roles
            and any(floor_of(p, target.floor) for p in chosen_pairs)
        ):
            chosen_floors.append(target)
    return _pairs_next_to_floors(chosen_pairs, chosen_floors)


def _pairs_next_to_floors(pairs: list[Target], floor_list: list[Target]) -> list[Target]:
    server_order = [s.name for s in matrix.servers()]
    ordered: list[Target] = []
    left = list(floor_list)
    for pair in sorted(pairs, key=lambda p: server_order.index(p.server)):  # stable
        refs = [
            f
            for f in left
            if f.floor is not None and f.server == pair.server and floor_of(pair, f.floor)
        ]
        refs.sort(key=lambda f: f.floor is not None and f.floor.floor_of != "framework")
        ordered += [pair, *refs]
        left = [f for f in left if f not in refs]
    return ordered + left


def floor_of(target: Target, floor: Floor) -> bool:
    """Whether ``floor`` is a reference for ``target`` (on the same server)."""
    if target.server not in floor.servers or (
        target.floor is not None and target.floor.name == floor.name
    ):
        return False
    if floor.floor_of == "server":
        return floor.kind == target.kind
    return target.role == "pair" and floor.framework == target.framework


def floor_refs(target: Target) -> dict[str, str]:
    """The ids of ``target``'s floors on its server, by what they are the floor of
    (``{"server": "raw_asgi-uvicorn", "framework": "hello_fastapi-uvicorn"}``)."""
    return {fl.floor_of: f"{fl.name}-{target.server}" for fl in floors() if floor_of(target, fl)}


def variant_target(exp: Experiment, variant: Variant) -> Target:
    """A variant as a target: its pair's server with the variant's settings and template
    values layered on the registry's, so it starts through the same command template."""
    framework_name, _, server_name = (variant.pair or exp.pair).partition("-")
    base = matrix.pair(framework_name, server_name)
    srv = replace(
        base.server,
        env={**base.server.env, **variant.env},
        vars={**base.server.vars, **variant.vars},
    )
    return Target(matrix.Pair(base.framework, srv), "variant", experiment=exp, variant=variant)


def experiment_targets(names: tuple[str, ...] = ()) -> list[Target]:
    """Every variant of the named experiments (all of them when none is named)."""
    chosen = [find_experiment(n) for n in names] if names else list(all_experiments())
    return [variant_target(exp, v) for exp in chosen for v in exp.variants]

"""Typed access to the ``[experiments.*]`` tables of ``matrix.toml``: the technique experiments.

An experiment asks one question of one pair ("does orjson beat the json module?") by running
the same scenarios under two or more *variants* in the same run, interleaved round by round.
A variant changes only how the server is started, never the request: ``LAB_*`` settings
(``env``), command-template values (``vars``, e.g. uvicorn's event loop), the worker count, or
the pair itself (sync Flask against async FastAPI). A variant may name its own scenarios where
the technique is the request (a compression codec is chosen by ``Accept-Encoding``).

``baseline`` is the variant the others are read against; ``probe`` is a path the harness
requests one at a time during every measured cell, to show what the load does to a
bystander (an event loop blocked by CPU work answers ``/health`` late).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from .scenarios import matrix_table, scenario

__all__ = ["Experiment", "Variant", "experiment", "experiments"]


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    doc: str = ""
    env: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    workers: int | None = None
    pair: str | None = None  # "framework-server"; None: the experiment's pair
    scenarios: tuple[str, ...] = ()  # () : the experiment's scenarios


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    title: str
    page: str  # docs/techniques/<page>.md
    pair: str
    scenarios: tuple[str, ...]
    variants: tuple[Variant, ...]
    baseline: str
    concurrency: tuple[int, ...] = ()
    probe: str | None = None
    server_cpus: tuple[int, ...] = ()  # () : the run's; [0, 1] where the point is a 2nd core

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"experiment {self.name} has no variant {name!r}")

    def scenarios_of(self, variant: Variant) -> tuple[str, ...]:
        return variant.scenarios or self.scenarios


def _variant(experiment_name: str, name: str, spec: dict[str, Any]) -> Variant:
    unknown = set(spec) - {"doc", "env", "vars", "workers", "pair", "scenarios"}
    if unknown:
        raise ValueError(f"experiment {experiment_name}, variant {name}: unknown keys {unknown}")
    return Variant(
        name=name,
        doc=str(spec.get("doc", "")),
        env={str(k): str(v) for k, v in spec.get("env", {}).items()},
        vars={str(k): str(v) for k, v in spec.get("vars", {}).items()},
        workers=int(spec["workers"]) if "workers" in spec else None,
        pair=spec.get("pair"),
        scenarios=tuple(spec.get("scenarios", ())),
    )


def _experiment(name: str, spec: dict[str, Any]) -> Experiment:
    variants = tuple(_variant(name, v, s) for v, s in spec["variants"].items())
    exp = Experiment(
        name=name,
        title=str(spec["title"]),
        page=str(spec.get("page", name)),
        pair=str(spec["pair"]),
        scenarios=tuple(spec.get("scenarios", ())),
        variants=variants,
        baseline=str(spec.get("baseline", variants[0].name)),
        concurrency=tuple(int(c) for c in spec.get("concurrency", ())),
        probe=spec.get("probe"),
        server_cpus=tuple(int(c) for c in spec.get("server_cpus", ())),
    )
    exp.variant(exp.baseline)  # the baseline must be one of the variants
    if len(variants) < 2:
        raise ValueError(f"experiment {name}: a comparison needs at least two variants")
    for v in variants:
        if not exp.scenarios_of(v):
            raise ValueError(f"experiment {name}, variant {v.name}: no scenarios")
        for sc in exp.scenarios_of(v):
            scenario(sc)  # KeyError names the unknown scenario
    return exp


@cache
def experiments() -> tuple[Experiment, ...]:
    """Every declared experiment, in the file's order."""
    return tuple(_experiment(n, s) for n, s in matrix_table("experiments").items())


def experiment(name: str) -> Experiment:
    for exp in experiments():
        if exp.name == name:
            return exp
    known = ", ".join(e.name for e in experiments())
    raise KeyError(f"unknown experiment {name!r}; known: {known}")

"""The cells of a run and the order they run in.

A *cell* is one target x scenario x concurrency x repeat, and for a fixed-rate run
(``lab bench --rate``) x offered rate: its concurrency is then the generator's connection
pool, not a closed loop. Cells are grouped by server start:
one *group* is one target under one server configuration (scenarios that need other LAB_*
settings, like ``limited``, get their own start) for one round. Rounds interleave repeats
across targets: round 1 runs every target once, then round 2 does it again (A B C A B C),
so a slow drift of the machine spreads over every target instead of landing on one; each
round starts each server afresh, so repeats also sample start-up variance.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from lab.scenarios import Offered, Scenario, parse_offered, scenario

from .method import Method
from .results import cell_id
from .targets import Target

__all__ = ["Cell", "Group", "build_plan"]


@dataclass(frozen=True, slots=True)
class Cell:
    target: Target
    scenario: Scenario
    concurrency: int
    repeat: int
    offered: Offered | None = None  # a fixed rate (bench/loadgen.c); None: closed loop (wrk)

    @property
    def id(self) -> str:
        label = None if self.offered is None else self.offered.label
        return cell_id(self.target.id, self.scenario.id, self.concurrency, self.repeat, label)

    @property
    def capacity_cell(self) -> str:
        """The closed-loop cell of the same round and server start whose requests/s a share
        of capacity is taken of."""
        return cell_id(self.target.id, self.scenario.id, self.concurrency, self.repeat)

    @property
    def seed(self) -> int:
        """Seeds the random ids of wrk's Lua: fixed per cell, different across cells."""
        return zlib.crc32(self.id.encode()) % 1_000_000


@dataclass(frozen=True, slots=True)
class Group:
    round: int
    target: Target
    env: tuple[tuple[str, str], ...]  # the scenarios' LAB_* settings for this server start
    cells: tuple[Cell, ...]

    @property
    def config(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.env) or "default"

    @property
    def slug(self) -> str:
        config = "default" if not self.env else f"cfg{zlib.crc32(self.config.encode()):08x}"
        return f"{self.target.id}__{config}__r{self.round}"


def scenarios_for(
    target: Target,
    scenarios: Sequence[Scenario],
    method: Method,
) -> list[Scenario]:
    if target.floor is not None:  # the run's floor scenarios that this floor serves
        served = target.floor.scenarios
        return [
            s
            for s in scenarios
            if s.id in served and (s.floor_only or s.id in method.floor_scenarios)
        ]
    if target.experiment is not None and target.variant is not None:
        wanted = target.experiment.scenarios_of(target.variant)
        return [scenario(name) for name in wanted]
    return [s for s in scenarios if not s.floor_only]


def levels(target: Target, sc: Scenario, method: Method) -> tuple[int, ...]:
    """Connection counts: the experiment's own, else the scenario's, else the run's. In a
    fixed-rate run they are the generator's pool, the run's alone."""
    if method.rates:
        return method.concurrency
    if target.experiment is not None and target.experiment.concurrency:
        return target.experiment.concurrency
    return sc.concurrency or method.concurrency


def offered_rates(sc: Scenario, method: Method) -> tuple[Offered, ...]:
    """The fixed rates a run offers ``sc``: those given (``--rate``), with ``declared``
    standing for the scenario's own ``rates``."""
    out: list[Offered] = []
    for spec in method.rates:
        for offered in sc.rates if spec == "declared" else (parse_offered(spec),):
            if offered not in out:
                out.append(offered)
    return tuple(out)


def loads(sc: Scenario, method: Method) -> tuple[Offered | None, ...]:
    """The cells' loads for one scenario: the closed loop alone, or the fixed rates, led by
    the closed loop when a rate is a share of the capacity it measures."""
    if not method.rates:
        return (None,)
    offered = offered_rates(sc, method)
    if any(o.share is not None for o in offered):
        return (None, *offered)
    return offered


def build_plan(
    targets: Sequence[Target], scenarios: Sequence[Scenario], method: Method
) -> list[Group]:
    """Every round starts each target once per configuration. Even rounds run the targets in
    reverse (A B, B A, A B): a slow drift of the machine's speed then favours neither side of
    a pair-to-floor ratio, and the two sit next to each other in every round (see
    :func:`bench.targets.select_targets`)."""
    groups: list[Group] = []
    for rnd in range(1, method.repeats + 1):
        for target in targets if rnd % 2 else list(reversed(targets)):
            by_config: dict[str, list[Scenario]] = {}
            for sc in scenarios_for(target, scenarios, method):
                by_config.setdefault(sc.config, []).append(sc)
            for config in sorted(by_config):  # "" (the default configuration) first
                chosen = by_config[config]
                cells = tuple(
                    Cell(target, sc, conc, rnd, offered)
                    for sc in chosen
                    for conc in levels(target, sc, method)
                    for offered in loads(sc, method)
                )
                env = tuple(sorted(chosen[0].env.items()))
                if cells:  # a scenario without declared rates has none in a `declared` run
                    groups.append(Group(rnd, target, env, cells))
    return groups

"""How a run measures: the ``[bench]`` tables of ``matrix.toml`` plus command-line overrides.

The method is written into the manifest; a resumed run must measure the same way, so
:meth:`Method.comparable` names the fields that must not change between sessions.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any

from lab.scenarios import matrix_table

__all__ = ["PLAN_ORDER", "Method", "method_for"]

# How bench/plan.py orders a run's cells: each pair next to its hello world and raw floor,
# server by server, even rounds reversed. Recorded in the manifest so a reader can tell such
# runs from those before 957235c, which played every pair, then every floor, minutes apart.
PLAN_ORDER = "neighbours"


@dataclass(frozen=True, slots=True)
class Method:
    mode: str  # quick | full | experiments | reference
    duration_s: float
    warmup_s: float
    concurrency: tuple[int, ...]
    repeats: int
    workers: int
    timeout_s: float
    threads: int
    noisy_threshold: float
    client_saturated: float
    pin: bool
    server_cpus: tuple[int, ...]
    client_cpus: tuple[int, ...]
    floor_scenarios: tuple[str, ...]
    instances: int = 0  # > 0: each target as N instances behind nginx (lab/scaleout.py)
    # CPUs held out of deep idle for the run (bench/idle.py): False in runs before 2026-12-06
    awake_cpus: bool = False
    order: str = PLAN_ORDER  # not a choice: what the plan did; see manifest.plan_order
    # Fixed-rate run (``--rate``): each cell is offered these rates by bench/loadgen.c instead
    # of wrk's closed loop: "N" requests/s, "P%" of the target's capacity, or "declared" (each
    # scenario's own ``rates``); () is a saturation run.
    rates: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("concurrency", "server_cpus", "client_cpus", "floor_scenarios", "rates"):
            data[key] = list(data[key])
        return data

    def comparable(self) -> dict[str, Any]:
        """What two sessions of one run must share for their cells to be comparable."""
        data = self.to_json()
        return {
            k: data[k]
            for k in (
                "duration_s",
                "warmup_s",
                "workers",
                "timeout_s",
                "threads",
                "pin",
                "server_cpus",
                "client_cpus",
                "instances",
                "awake_cpus",
                "rates",
            )
        }


def method_for(
    *,
    quick: bool,
    experiments: bool = False,
    reference: bool = False,
    duration_s: float | None = None,
    warmup_s: float | None = None,
    repeats: int | None = None,
    concurrency: tuple[int, ...] = (),
    workers: int | None = None,
    pin: bool = True,
    instances: int | None = None,
    awake: bool = True,
    rates: tuple[str, ...] = (),
) -> Method:
    """The declared method for the mode, with the given overrides. Pinning is on only when
    asked for and the machine has the declared CPUs; the CPUs are held awake when
    ``[bench] awake_cpus`` says so and ``awake`` does not refuse it (whether the machine let
    the harness is the run's record, not the method's)."""
    bench = matrix_table("bench")
    mode_name = (
        "experiments" if experiments else "reference" if reference else "quick" if quick else "full"
    )
    mode = bench[mode_name]
    rates = rates or tuple(str(r) for r in mode.get("rates", ()))
    server_cpus = tuple(int(c) for c in bench.get("server_cpus", (0,)))
    client_cpus = tuple(int(c) for c in bench.get("client_cpus", (1,)))
    method = Method(
        mode=mode_name,
        duration_s=float(mode["duration_s"]),
        warmup_s=float(mode["warmup_s"]),
        concurrency=tuple(int(c) for c in mode["concurrency"]),
        repeats=int(mode["repeats"]),
        workers=int(mode.get("workers", 1)),
        timeout_s=float(bench.get("timeout_s", 10)),
        threads=int(bench.get("threads", 1)),
        noisy_threshold=float(bench.get("noisy_threshold", 0.10)),
        client_saturated=float(bench.get("client_saturated", 0.90)),
        pin=pin and can_pin(server_cpus + client_cpus),
        server_cpus=server_cpus,
        client_cpus=client_cpus,
        floor_scenarios=tuple(
            mode.get("floor_scenarios", bench.get("floor_scenarios", ("json", "plaintext")))
        ),
        awake_cpus=awake and bool(bench.get("awake_cpus", False)),
    )
    overrides: dict[str, Any] = {}
    if duration_s is not None:
        overrides["duration_s"] = float(duration_s)
    if warmup_s is not None:
        overrides["warmup_s"] = float(warmup_s)
    if repeats is not None:
        overrides["repeats"] = int(repeats)
    if concurrency:
        overrides["concurrency"] = tuple(sorted(set(concurrency)))
    if workers is not None:
        overrides["workers"] = int(workers)
    if instances is not None:
        overrides["instances"] = int(instances)
    if rates:
        overrides["rates"] = tuple(dict.fromkeys(rates))
        if not concurrency:
            overrides["concurrency"] = tuple(int(c) for c in bench.get("rate_connections", (64,)))
    return replace(method, **overrides)


def can_pin(cpus: tuple[int, ...]) -> bool:
    """Whether this process may run on every CPU named (so a child can be pinned to any)."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return False
    return len(set(cpus)) >= 2 and set(cpus) <= allowed

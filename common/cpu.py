"""The CPU-bound workload of ``/cpu`` and tasks (SPEC §3.14)."""

from __future__ import annotations

__all__ = ["spin"]


def spin(n: int) -> int:
    """Pure Python on purpose: the loop holds the GIL, which is what the experiment
    measures (threads vs processes vs inline). Do not vectorise or cache it."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000000007
    return x

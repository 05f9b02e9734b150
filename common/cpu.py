"""The CPU-bound workload of ``/cpu`` and tasks (SPEC §3.14)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from .settings import Settings

__all__ = ["executor", "spin"]


def spin(n: int) -> int:
    """Pure Python on purpose: the loop holds the GIL, which is what the experiment
    measures (threads vs processes vs inline). Do not vectorise or cache it."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000000007
    return x


def executor(settings: Settings) -> Executor | None:
    """The pool ``/cpu`` and tasks run on (``LAB_CPU_EXECUTOR``): threads keep the event loop
    (or request thread) free but share the GIL; processes run in parallel; ``inline`` (None)
    runs on the caller, the experiment's "blocking" side. Shared by the async and sync edges."""
    if settings.cpu_executor == "thread":
        return ThreadPoolExecutor(max_workers=4, thread_name_prefix="lab-cpu")
    if settings.cpu_executor == "process":
        return ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
    return None

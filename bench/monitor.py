"""The server's cost: CPU time and peak memory of its whole process tree during a cell.

A thread samples the tree (the server's process and its descendants, found afresh each time
so respawned workers count) about ten times a second. CPU is the sum over processes of the
growth of user + system time since the process was first seen (a process first seen
mid-window counts from zero: it started inside the window); memory is the largest sum of
RSS seen at one sample (shared pages of forked workers are counted once per process, as RSS
does, so this is an upper bound). Context switches are summed over every thread of the tree
(``/proc/PID/task/TID/status``; a process's own status counts its main thread only):
voluntary ones are a thread blocking (an event loop with nothing ready, a worker thread
waiting for the interpreter), involuntary ones the scheduler taking the CPU away.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import psutil

from .background import Background

__all__ = [
    "CpuMeter",
    "TreeSample",
    "TreeSampler",
    "listening_pid",
    "runtime_delta_s",
    "tree_affinity",
    "tree_cpu_s",
    "tree_pids",
    "tree_runtime_ns",
    "wait_idle",
]


@dataclass(frozen=True, slots=True)
class TreeSample:
    cpu_s: float  # user + system
    peak_rss_bytes: int
    processes: int
    samples: int
    system_s: float = 0.0  # the kernel's part of cpu_s: syscalls, network stack, page faults
    voluntary_switches: int = 0  # summed over the tree's threads
    involuntary_switches: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu_s": round(self.cpu_s, 4),
            "system_s": round(self.system_s, 4),
            "voluntary_switches": self.voluntary_switches,
            "involuntary_switches": self.involuntary_switches,
            "peak_rss_bytes": self.peak_rss_bytes,
            "processes": self.processes,
            "samples": self.samples,
        }


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def thread_switches(pid: int) -> dict[int, tuple[int, int]]:
    """(voluntary, involuntary) context switches of each live thread of one process, by id."""
    counts: dict[int, tuple[int, int]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return counts
    for tid in tids:
        voluntary = involuntary = 0
        try:
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary = int(line.split()[1])
        except OSError:  # the thread ended between the listing and the read
            continue
        counts[int(tid)] = (voluntary, involuntary)
    return counts


def tree_pids(pid: int) -> list[int]:
    """The process and its live descendants."""
    return [proc.pid for proc in _tree(pid)]


def tree_affinity(pid: int) -> list[int]:
    """The CPUs any process of the tree may run on."""
    cpus: set[int] = set()
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error, AttributeError):
            cpus.update(proc.cpu_affinity() or [])
    return sorted(cpus)


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the tree's live processes."""
    total = 0.0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` of this machine, None when there is none or the
    system will not say (another user's process, without root)."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            bound_port = getattr(conn.laddr, "port", None)  # laddr is () when unbound
            if conn.status == psutil.CONN_LISTEN and bound_port == port and conn.pid is not None:
                return int(conn.pid)
    return None


def tree_runtime_ns(pid: int) -> dict[int, int]:
    """Nanoseconds each live thread of the tree has run (user + system), by thread id, from
    the scheduler's own accounting (``/proc/PID/task/TID/schedstat``). psutil's CPU times
    come in clock ticks (10 ms): at a fixed rate of 1,000 requests/s for 3 s that is a step
    of 3.3 us a request, too coarse for a cost per request."""
    runtime: dict[int, int] = {}
    for proc in _tree(pid):
        try:
            tids = os.listdir(f"/proc/{proc.pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{proc.pid}/task/{tid}/schedstat", encoding="ascii") as fh:
                    runtime[int(tid)] = int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return runtime


def runtime_delta_s(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds the threads alive at ``after`` ran since ``before``. A thread that ended
    in between is left out (its time is lost, never subtracted); one born in between counts
    from zero."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


class CpuMeter:
    """CPU seconds (user + system) that named process trees spend inside ``with meter:``,
    each read from the scheduler before and after (:func:`tree_runtime_ns`). A name given
    no pid (a service elsewhere, or not found) is listed in ``unmeasured`` and left out."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.unmeasured = sorted(name for name, pid in pids.items() if pid is None)
        self._before: dict[str, dict[int, int]] = {}
        self.used_s: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._before = {name: tree_runtime_ns(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.used_s = {
            name: runtime_delta_s(self._before[name], tree_runtime_ns(pid))
            for name, pid in self.pids.items()
        }


def wait_idle(
    pid: int, *, window_s: float = 0.1, idle: float = 0.05, timeout_s: float = 10.0
) -> float:
    """Wait until the tree used less than ``idle`` of a CPU over one ``window_s`` (a server
    still finishing requests abandoned by the last load run would bill the next cell), at
    most ``timeout_s``. Returns the seconds waited."""
    started = time.monotonic()
    last = tree_cpu_s(pid)
    while time.monotonic() - started < timeout_s:
        time.sleep(window_s)
        now = tree_cpu_s(pid)
        if now - last < idle * window_s:
            break
        last = now
    return time.monotonic() - started


class TreeSampler(Background):
    """``with TreeSampler(pid) as s: ...`` then ``s.result()``."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        super().__init__("tree-sampler")
        self.pid = pid
        self.interval_s = interval_s
        # (user, system) CPU seconds by process (pid, create time: a reused pid is another)
        self._start_cpu: dict[tuple[int, float], tuple[float, float]] = {}
        self._last_cpu: dict[tuple[int, float], tuple[float, float]] = {}
        # (voluntary, involuntary) switches by thread (pid, create time, thread id)
        self._start_switches: dict[tuple[int, float, int], tuple[int, int]] = {}
        self._last_switches: dict[tuple[int, float, int], tuple[int, int]] = {}
        self._peak_rss = 0
        self._samples = 0
        self._lock = threading.Lock()

    def sample(self, *, first: bool = False) -> None:
        rss = 0
        with self._lock:
            for proc in _tree(self.pid):
                try:
                    with proc.oneshot():
                        key = (proc.pid, proc.create_time())
                        times = proc.cpu_times()
                        rss += proc.memory_info().rss
                except psutil.Error:
                    continue
                cpu = (times.user, times.system)
                if key not in self._start_cpu:
                    self._start_cpu[key] = cpu if first else (0.0, 0.0)
                self._last_cpu[key] = cpu
                for tid, switches in thread_switches(proc.pid).items():
                    thread = (*key, tid)
                    if thread not in self._start_switches:
                        self._start_switches[thread] = switches if first else (0, 0)
                    self._last_switches[thread] = switches
            self._peak_rss = max(self._peak_rss, rss)
            self._samples += 1

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> Self:
        self.sample(first=True)
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.sample()

    def result(self) -> TreeSample:
        with self._lock:
            user = sum(self._last_cpu[k][0] - self._start_cpu[k][0] for k in self._last_cpu)
            system = sum(self._last_cpu[k][1] - self._start_cpu[k][1] for k in self._last_cpu)
            grown = [
                (last[0] - self._start_switches[t][0], last[1] - self._start_switches[t][1])
                for t, last in self._last_switches.items()
            ]
            return TreeSample(
                max(user + system, 0.0),
                self._peak_rss,
                len(self._last_cpu),
                self._samples,
                system_s=max(system, 0.0),
                voluntary_switches=sum(v for v, _ in grown),
                involuntary_switches=sum(i for _, i in grown),
            )

"""The load tool: wrk driven by ``bench/lua/lab.lua``, whose ``done()`` writes JSON.

wrk's text output is kept for people (``raw/``) and never parsed. The binary is injectable
(``--wrk PATH`` or ``LAB_WRK``) so tests can stand a fake in for it: anything that takes wrk's
arguments and writes the same JSON to ``$LAB_WRK_OUT`` will do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import procs
from lab.scenarios import Scenario

__all__ = [
    "LUA_SCRIPT",
    "LoadError",
    "LoadResult",
    "LoadRun",
    "find_wrk",
    "parse_result",
    "run_load",
    "run_tool",
    "wrk_env",
    "wrk_version",
]

LUA_SCRIPT = Path(__file__).with_name("lua") / "lab.lua"
FORMAT = "lab-wrk/1"
RATE_FORMAT = "lab-loadgen/1"  # bench/loadgen.c, the fixed-rate generator
SOCKET_ERRORS = ("connect", "read", "write", "timeout")
PERCENTILES = ("p50", "p75", "p90", "p99", "p99_9")


class LoadError(RuntimeError):
    """The load tool did not run or did not report."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What ``done()`` reports: latencies in microseconds, counts summed over threads."""

    duration_us: int
    requests: int
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]
    statuses: dict[int, int]
    header_counts: dict[str, int] = field(default_factory=dict)
    responses: int = 0
    mismatches: int = 0
    threads: int = 1
    response_hook: bool = True
    # Fixed-rate runs only (lab-loadgen): the offered rate, the requests due in the window
    # that never went out, and the latency from the actual send and the generator's own lag
    # (``latency_us`` is then measured from each request's intended send time).
    offered_rps: float | None = None
    unsent: int = 0
    service_latency_us: dict[str, float] | None = None
    send_lag_us: dict[str, float] | None = None
    scheduling: str | None = None  # the generator's own: fifo, nice-10 or normal

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us > 0 else 0.0

    @property
    def bytes_per_response(self) -> float | None:
        return self.bytes / self.requests if self.requests else None

    @property
    def socket_errors(self) -> int:
        return sum(self.errors.get(kind, 0) for kind in SOCKET_ERRORS)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_us": self.duration_us,
            "rps": round(self.rps, 3),
            "bytes": self.bytes,
            "bytes_per_response": (
                None if self.bytes_per_response is None else round(self.bytes_per_response, 1)
            ),
            "latency_us": self.latency_us,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "header_counts": self.header_counts,
            "responses": self.responses,
            "mismatches": self.mismatches,
            "threads": self.threads,
            "response_hook": self.response_hook,
            **(
                {}
                if self.offered_rps is None
                else {
                    "offered_rps": self.offered_rps,
                    "unsent": self.unsent,
                    "service_latency_us": self.service_latency_us,
                    "send_lag_us": self.send_lag_us,
                    "scheduling": self.scheduling,
                }
            ),
        }


def parse_result(text: str) -> LoadResult:
    """Parse (and validate) the JSON ``done()`` wrote."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(f"the load tool's JSON does not parse: {exc}") from None
    if not isinstance(data, dict) or data.get("format") not in (FORMAT, RATE_FORMAT):
        raise LoadError(f"the load tool's JSON is not {FORMAT} or {RATE_FORMAT}")
    fixed_rate = data["format"] == RATE_FORMAT
    try:
        errors = {k: int(data["errors"].get(k, 0)) for k in (*SOCKET_ERRORS, "status")}
        latency = {k: float(v) for k, v in data["latency_us"].items()}
        missing = {"min", "mean", "max", *PERCENTILES} - set(latency)
        if missing:
            raise LoadError(f"latency percentiles missing: {', '.join(sorted(missing))}")
        return LoadResult(
            duration_us=int(data["duration_us"]),
            requests=int(data["requests"]),
            bytes=int(data["bytes"]),
            errors=errors,
            latency_us=latency,
            statuses={int(k): int(v) for k, v in data.get("statuses", {}).items()},
            header_counts={str(k): int(v) for k, v in data.get("header_counts", {}).items()},
            responses=int(data.get("responses", 0)),
            mismatches=int(data.get("mismatches", 0)),
            threads=int(data.get("threads", 1)),
            response_hook=bool(data.get("response_hook", True)),
            offered_rps=float(data["offered_rps"]) if fixed_rate else None,
            unsent=int(data["unsent"]) if fixed_rate else 0,
            service_latency_us=_floats(data["service_latency_us"]) if fixed_rate else None,
            send_lag_us=_floats(data["send_lag_us"]) if fixed_rate else None,
            scheduling=str(data["scheduling"]) if fixed_rate else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LoadError(f"the load tool's JSON lacks a field: {exc!r}") from None


def _floats(table: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in table.items()}


def find_wrk(explicit: str | None = None) -> str | None:
    """The wrk binary: ``explicit``, else ``$LAB_WRK``, else ``wrk`` on PATH."""
    candidate = explicit or os.environ.get("LAB_WRK") or "wrk"
    if os.sep in candidate:
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which(candidate)


def wrk_version(wrk: str) -> str | None:
    """``wrk -v`` prints ``wrk 4.1.0 [epoll] Copyright ...`` (and exits 1)."""
    try:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = (out.stdout or out.stderr).strip().splitlines()
    return " ".join(line[0].split(" Copyright")[0].split()) if line else None


def wrk_env(scenario: Scenario, out: Path, *, seed: int) -> dict[str, str]:
    """The variables ``lab.lua`` reads for this scenario."""
    env = {
        "LAB_WRK_OUT": str(out),
        "LAB_WRK_METHOD": scenario.method,
        "LAB_WRK_PATH": scenario.path,
        "LAB_WRK_SEED": str(seed),
    }
    if scenario.ids is not None:
        env["LAB_WRK_ID_MIN"], env["LAB_WRK_ID_MAX"] = map(str, scenario.ids)
    if scenario.headers:
        env["LAB_WRK_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in scenario.headers.items())
    if scenario.body is not None:
        env["LAB_WRK_BODY"] = scenario.body
    if scenario.load.body_contains:
        env["LAB_WRK_EXPECT_BODY"] = scenario.load.body_contains
    if scenario.load.header:
        env["LAB_WRK_EXPECT_HEADER"] = f"{scenario.load.header[0]}: {scenario.load.header[1]}"
    if scenario.load.header_present:
        env["LAB_WRK_HEADER_PRESENT"] = scenario.load.header_present
    if scenario.load.count_header:
        env["LAB_WRK_COUNT_HEADER"] = scenario.load.count_header
    if scenario.load.revalidate:
        env["LAB_WRK_REVALIDATE"] = "1"
    return env


@dataclass(frozen=True, slots=True)
class LoadRun:
    """One run of the load tool: its report, its own CPU time and the command line."""

    result: LoadResult
    client_cpu_s: float
    wall_s: float
    argv: list[str]

    @property
    def client_util(self) -> float:
        """wrk's CPU time over wall time, per thread: 1.0 is a saturated client."""
        threads = max(self.result.threads, 1)
        return self.client_cpu_s / self.wall_s / threads if self.wall_s > 0 else 0.0


def run_load(
    wrk: str,
    base_url: str,
    scenario: Scenario,
    *,
    connections: int,
    duration_s: float,
    timeout_s: float,
    threads: int,
    out: Path,
    text_out: Path,
    seed: int,
    cpus: tuple[int, ...] | None,
    env: Mapping[str, str] | None = None,
) -> LoadRun:
    """Run the load tool once and return what it reported. Its CPU time comes from the
    kernel's accounting of the reaped child (``wait4``), not from sampling."""
    threads = max(1, min(threads, connections))
    duration = max(1, round(duration_s))
    argv = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        f"{timeout_s:g}s",
        "-s",
        str(LUA_SCRIPT),
        base_url.rstrip("/") + "/",
    ]
    full_env = {**(os.environ if env is None else env), **wrk_env(scenario, out, seed=seed)}
    return run_tool(
        argv,
        env=full_env,
        out=out,
        text_out=text_out,
        cpus=cpus,
        deadline_s=duration + timeout_s + 30,
    )


def run_tool(
    argv: list[str],
    *,
    env: Mapping[str, str],
    out: Path,
    text_out: Path,
    cpus: tuple[int, ...] | None,
    deadline_s: float,
) -> LoadRun:
    """Run a load tool that writes its JSON to ``out``; its console goes to ``text_out``.
    Its CPU time comes from the kernel's accounting of the reaped child (``wait4``), not
    from sampling. A tool that fails, or exits without its JSON, raises :class:`LoadError`:
    the cell fails, and no number is recorded."""
    tool = Path(argv[0]).name
    if cpus:
        argv = ["taskset", "-c", ",".join(map(str, cpus)), *argv]
    out.unlink(missing_ok=True)
    started = time.monotonic()
    with text_out.open("wb") as log:
        proc = procs.spawn(argv, env=dict(env), stdout=log.fileno(), stderr=subprocess.STDOUT)
        try:
            _, status, usage = _wait4(proc, deadline_s)
        finally:
            if proc.returncode is None:
                procs.stop_group(proc, grace_s=2)
    wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not out.exists():
        tail = text_out.read_text(errors="replace")[-800:]
        raise LoadError(
            f"{tool} exited with {code}"
            f"{'' if out.exists() else ' and wrote no JSON'}: {tail.strip()}"
        )
    return LoadRun(parse_result(out.read_text()), usage.ru_utime + usage.ru_stime, wall, argv)


def _wait4(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, int, Any]:
    """``os.wait4`` with a deadline; records the exit code on ``proc`` as ``wait`` would."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        if time.monotonic() > deadline:
            raise LoadError(f"the load tool did not finish within {timeout_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)

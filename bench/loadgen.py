"""The fixed-rate load generator (``bench/loadgen/loadgen.c``): built on first use, run per cell.

Why the lab has its own: a fixed-rate cell must time every request from when it was due, or
a stalled server hides its stall (coordinated omission), and neither load tool the lab can
install does that. wrk's Lua ``delay()`` paces each connection as a closed loop with think
time, so a slow server lowers the rate it is offered, and its latency runs from the actual
send; h2load's ``--rps`` holds the rate but also times from the actual send. wrk2, which
corrects it, is on neither Debian nor PyPI. The measurements behind this choice are in
docs/reading-results.md ("The fixed-rate generator"); the calibration tests
(tests/bench/test_loadgen.py) hold the generator to them.

The C source is compiled with the system's ``cc`` into the user's cache, under a name that
carries the source's digest, so an edited source is rebuilt and a stale binary never runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from lab.cache import cache_dir, partial
from lab.scenarios import Scenario

from .load import LoadError, LoadRun, run_tool

__all__ = [
    "MAX_RATE",
    "SOURCE",
    "argv_for",
    "argv_for_url",
    "build",
    "check_rate",
    "run_rate_load",
    "unsupported",
]

SOURCE = Path(__file__).with_name("loadgen") / "loadgen.c"
# The highest offered rate the lab accepts: the generator held 70,000 req/s to the request
# against nginx on this project's 2-vCPU VMs, one core each (docs/reading-results.md); the
# margin is for slower machines. Above it, a shortfall could be the client's, not the server's.
MAX_RATE = 50_000.0


def check_rate(rate: float) -> str | None:
    """Why ``rate`` cannot be offered, or None when it can."""
    if not rate > 0:  # also refuses NaN
        return f"--rate must be above 0 requests/s (got {rate:g})"
    if rate > MAX_RATE:
        return (
            f"--rate {rate:g} is above the {MAX_RATE:,.0f} requests/s the fixed-rate generator "
            "is known to hold on one core; a shortfall there could be the client's"
        )
    return None


def unsupported(scenario: Scenario) -> str | None:
    """Why ``scenario`` cannot run at a fixed rate, or None when it can."""
    if scenario.load.revalidate:
        return (
            f"scenario {scenario.id!r} revalidates with the last ETag seen, which only the wrk "
            "script does; it runs closed-loop only"
        )
    return None


def build() -> Path:
    """The generator's binary, compiled from :data:`SOURCE` if this version is not built yet."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    binary = cache_dir() / f"lab-loadgen-{digest}"
    if binary.exists():
        return binary
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise LoadError("no C compiler (cc) to build the fixed-rate generator: run scripts/setup")
    binary.parent.mkdir(parents=True, exist_ok=True)
    compiled = partial(binary)
    done = subprocess.run(
        [cc, "-O2", "-std=gnu11", "-o", str(compiled), str(SOURCE), "-lm"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        compiled.unlink(missing_ok=True)
        raise LoadError(f"building {SOURCE.name} failed: {done.stderr.strip()[-800:]}")
    compiled.replace(binary)
    return binary


def argv_for_url(
    url: str,
    *,
    rate: float,
    connections: int,
    duration_s: float,
    out: Path,
    timeout_s: float = 10.0,
) -> list[str]:
    """The generator's command line for GET ``/`` of ``url`` (a scenario adds its own)."""
    return [
        str(build()),
        "--url",
        url.rstrip("/"),
        "--rate",
        f"{rate:g}",
        "--connections",
        str(connections),
        "--duration",
        f"{duration_s:g}",
        "--timeout",
        f"{timeout_s:g}",
        "--out",
        str(out),
    ]


def argv_for(
    base_url: str,
    scenario: Scenario,
    *,
    rate: float,
    connections: int,
    duration_s: float,
    timeout_s: float,
    out: Path,
    seed: int,
) -> list[str]:
    """The generator's command line for one cell of ``scenario``."""
    argv = argv_for_url(
        base_url,
        rate=rate,
        connections=connections,
        duration_s=duration_s,
        out=out,
        timeout_s=timeout_s,
    )
    argv += ["--method", scenario.method, "--path", scenario.path, "--seed", str(seed)]
    if scenario.ids is not None:
        argv += ["--ids", f"{scenario.ids[0]}:{scenario.ids[1]}"]
    for name, value in scenario.headers.items():
        argv += ["--header", f"{name}: {value}"]
    if scenario.body is not None:
        argv += ["--body", scenario.body]
    expect = scenario.load
    if expect.body_contains:
        argv += ["--expect-body", expect.body_contains]
    if expect.header:
        argv += ["--expect-header", f"{expect.header[0]}: {expect.header[1]}"]
    if expect.header_present:
        argv += ["--header-present", expect.header_present]
    if expect.count_header:
        argv += ["--count-header", expect.count_header]
    return argv


def run_rate_load(
    base_url: str,
    scenario: Scenario,
    *,
    rate: float,
    connections: int,
    duration_s: float,
    timeout_s: float,
    out: Path,
    text_out: Path,
    seed: int,
    cpus: tuple[int, ...] | None,
    env: Mapping[str, str] | None = None,
) -> LoadRun:
    """Offer ``rate`` requests/s for ``duration_s`` and return what the generator measured."""
    argv = argv_for(
        base_url,
        scenario,
        rate=rate,
        connections=connections,
        duration_s=duration_s,
        timeout_s=timeout_s,
        out=out,
        seed=seed,
    )
    return run_tool(
        argv,
        env=os.environ if env is None else env,
        out=out,
        text_out=text_out,
        cpus=cpus,
        deadline_s=duration_s + 2 * timeout_s + 30,
    )

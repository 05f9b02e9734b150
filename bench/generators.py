"""``python -m bench.generators``: the load generators the lab could use, measured the same way.

Each one offers the same rate to the two calibration servers (bench/calibration.py): one
that answers after 10 ms, one that freezes for the first half of every second. A generator
fit for fixed-rate cells must hold the rate against both and report, against the freezing
one, a p75 of hundreds of milliseconds (half of the requests fall due inside a pause). Then
the lab's generator offers rising rates to nginx (``return 200``) on the other core, to find
where it stops holding the rate. The table this prints is the one in docs/reading-results.md.

Candidates: wrk pacing each connection with its Lua ``delay()`` (closed loop with think
time), h2load ``--rps`` (Debian's nghttp2-client; per-request times from ``--log-file``) and
the lab's own generator (bench/loadgen.c). A candidate that is not installed is reported so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lab import procs

from . import loadgen
from .stats import percentile

HOST = "127.0.0.1"
CONNECTIONS = 32
PACING_LUA = """
local interval_ms = tonumber(os.getenv("PACE_MS"))
function delay() return interval_ms end
done = function(summary, latency, requests)
  io.write(string.format("%d %d %d\\n", summary.requests, latency:percentile(50),
    latency:percentile(75)))
end
"""
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  server {{ listen {host}:{port}; location / {{ return 200 "ok"; }} }}
}}
"""

Measure = Callable[[str, float, float, Path], tuple[int, float, float]]


@contextmanager
def _server(argv: list[str], health: str) -> Iterator[None]:
    proc = procs.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        procs.wait_http_ok(health, timeout_s=30, proc=proc)
        yield
    finally:
        procs.stop_group(proc, grace_s=3)


def _calibration(kind: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bench.calibration", kind, "--port", str(port), "--ms", "10"]


def wrk_paced(url: str, rate: float, seconds: float, work: Path) -> tuple[int, float, float]:
    """(requests, p50 us, p75 us) from wrk with every connection pacing itself."""
    script = work / "pace.lua"
    script.write_text(PACING_LUA)
    env = {**os.environ, "PACE_MS": str(round(CONNECTIONS / rate * 1000))}
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "-s", str(script), url]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    requests, p50, p75 = out.strip().splitlines()[-1].split()
    return int(requests), float(p50), float(p75)


def h2load_rps(url: str, rate: float, seconds: float, work: Path) -> tuple[int, float, float]:
    """(requests, p50 us, p75 us) from h2load --rps, its per-request log read back."""
    log = work / "h2load.log"
    argv = [
        "h2load",
        "--h1",
        "-c",
        str(CONNECTIONS),
        "--rps",
        f"{rate / CONNECTIONS:g}",
        "-D",
        f"{seconds:.0f}",
        "--log-file",
        str(log),
        url,
    ]
    subprocess.run(argv, capture_output=True, check=True)
    times = sorted(float(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    return len(times), percentile(times, 50), percentile(times, 75)


def lab_loadgen(url: str, rate: float, seconds: float, work: Path) -> tuple[int, float, float]:
    out = work / "loadgen.json"
    argv = loadgen.argv_for_url(
        url, rate=rate, connections=CONNECTIONS, duration_s=seconds, out=out
    )
    subprocess.run(argv, capture_output=True, check=True)
    data = json.loads(out.read_text())
    return int(data["requests"]), float(data["latency_us"]["p50"]), float(data["latency_us"]["p75"])


CANDIDATES: dict[str, tuple[str | None, Measure]] = {
    "wrk, Lua delay() pacing": ("wrk", wrk_paced),
    "h2load --rps": ("h2load", h2load_rps),
    "lab-loadgen": (None, lab_loadgen),
}


def calibrate(rate: float, seconds: float) -> None:
    print(f"## {rate:g} req/s offered for {seconds:g} s, {CONNECTIONS} connections\n")
    print("| generator | server | achieved / offered | p50 ms | p75 ms |")
    print("|---|---|---|---|---|")
    for kind in ("delay", "freeze"):
        port = procs.free_port(HOST)
        with _server(_calibration(kind, port), f"http://{HOST}:{port}/health"):
            for name, (binary, measure) in CANDIDATES.items():
                server = "10 ms delay" if kind == "delay" else "frozen half of every second"
                if binary is not None and shutil.which(binary) is None:
                    print(f"| {name} | {server} | not installed | | |")
                    continue
                with tempfile.TemporaryDirectory() as work:
                    n, p50, p75 = measure(f"http://{HOST}:{port}/", rate, seconds, Path(work))
                print(
                    f"| {name} | {server} | {n / (rate * seconds):.2f} | "
                    f"{p50 / 1000:.1f} | {p75 / 1000:.1f} |"
                )


def ceiling(rates: list[float], seconds: float) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        print("\nnginx not installed: the ceiling was not measured (scripts/setup installs it)")
        return
    print(f"\n## lab-loadgen against nginx, {seconds:g} s a rate, server on CPU 0, client on 1\n")
    print("| offered req/s | achieved / offered | client CPU / wall | send lag p99 us |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        port = procs.free_port(HOST)
        conf = Path(work) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=work, host=HOST, port=port))
        argv = ["taskset", "-c", "0", nginx, "-c", str(conf), "-p", work]
        with _server(argv, f"http://{HOST}:{port}/"):
            for rate in rates:
                out = Path(work) / "loadgen.json"
                argv = loadgen.argv_for_url(
                    f"http://{HOST}:{port}", rate=rate, connections=64, duration_s=seconds, out=out
                )
                started = time.monotonic()
                usage_before = os.times()
                subprocess.run(["taskset", "-c", "1", *argv], capture_output=True, check=True)
                usage_after = os.times()
                wall = time.monotonic() - started
                cpu = (usage_after.children_user - usage_before.children_user) + (
                    usage_after.children_system - usage_before.children_system
                )
                data = json.loads(out.read_text())
                held = int(data["requests"]) / (rate * seconds)
                lag = data["send_lag_us"]["p99"]
                print(f"| {rate:,.0f} | {held:.3f} | {cpu / wall:.2f} | {lag:.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.generators", description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--ceiling", type=float, nargs="*", default=[10_000, 30_000, 50_000, 70_000]
    )
    args = parser.parse_args(argv)
    calibrate(args.rate, args.seconds)
    ceiling(args.ceiling, args.seconds)


if __name__ == "__main__":
    main()

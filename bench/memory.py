"""``lab memory``: does a streamed response keep the server's memory flat? (issue 8)

The goal: the server's RSS grows by less than 10 MB between streaming 1,000 and 100,000
items, for every pair and every stream format (NDJSON, JSON, CSV). A server that buffers the
whole body (or the whole result set) grows with the count; one that streams from a
server-side cursor in batches does not.

Method, per pair and format, on a fresh server (so one format's high-water mark does not
hide another's): stream ``count=1000`` ``rounds`` times, then ``count=100000`` ``rounds``
times, one request at a time, reading each body to its end and checking its item count.
The process tree's RSS is sampled every 50 ms during each phase (``bench.monitor``'s
sampler: the sum over the tree, so an upper bound with forked workers); the figure is the
phase's peak. The delta is large-phase peak minus small-phase peak; the small phase runs
first so that start-up growth (pools, caches, imports on first use) lands before the
baseline. Writes ``memory.json`` (results plus the run's environment, as ``lab bench``'s
manifest) and ``memory.md`` (the table) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from lab import matrix, procs

from . import manifest, preflight
from .monitor import TreeSampler

__all__ = ["FORMATS", "LIMIT_BYTES", "Result", "command", "markdown", "measure"]

HOST = "127.0.0.1"
LIMIT_BYTES = 10 * 1000 * 1000  # "less than 10 MB" (decimal megabytes, as the issue says)
SMALL, LARGE = 1000, 100_000
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 120.0
FORMATS: dict[str, str] = {
    "ndjson": "application/x-ndjson",
    "json": "application/json",
    "csv": "text/csv",
}


@dataclass(frozen=True, slots=True)
class Result:
    pair: str
    format: str
    small_count: int
    large_count: int
    rounds: int
    small_peak_rss_bytes: int
    large_peak_rss_bytes: int
    delta_bytes: int
    limit_bytes: int
    passed: bool
    large_seconds: float  # wall time of one large response (the last), for scale

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def items_in(fmt: str, body: bytes) -> int:
    """How many items a stream body carries (the check that it really streamed them all)."""
    if fmt == "ndjson":
        return sum(1 for line in body.splitlines() if line.strip())
    if fmt == "csv":
        return max(0, sum(1 for line in body.splitlines() if line.strip()) - 1)  # a header row
    doc = orjson.loads(body)
    return len(doc) if isinstance(doc, list) else -1


def fetch(base_url: str, fmt: str, count: int) -> float:
    """Stream one response to its end in 64 KiB reads (never held whole by a slow reader:
    the client keeps pace, as a real consumer would); returns its wall time."""
    request = urllib.request.Request(  # noqa: S310 - loopback URL
        f"{base_url}/stream/items?count={count}", headers={"Accept": FORMATS[fmt]}
    )
    started = time.monotonic()
    chunks: list[bytes] = []
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as resp:  # noqa: S310
        if resp.status != 200:
            raise RuntimeError(f"{fmt} count={count}: HTTP {resp.status}")
        while chunk := resp.read(65536):
            chunks.append(chunk)
    elapsed = time.monotonic() - started
    got = items_in(fmt, b"".join(chunks))
    if got != count:
        raise RuntimeError(f"{fmt} count={count}: the body carries {got} items")
    return elapsed


def phase_peak(pid: int, base_url: str, fmt: str, count: int, rounds: int) -> tuple[int, float]:
    seconds = 0.0
    with TreeSampler(pid, interval_s=0.05) as sampler:
        for _ in range(rounds):
            seconds = fetch(base_url, fmt, count)
    return sampler.result().peak_rss_bytes, seconds


def measure(
    pair: matrix.Pair,
    fmt: str,
    *,
    env: dict[str, str],
    log_dir: Path,
    rounds: int = 3,
    small: int = SMALL,
    large: int = LARGE,
) -> Result:
    """One fresh server for ``pair``, the two phases for ``fmt``, the server stopped."""
    port = procs.free_port(HOST)
    argv = pair.argv(host=HOST, port=port, workers=1)
    log = log_dir / f"{pair.id}__{fmt}.server.log"
    with log.open("ab") as fh:
        proc = procs.spawn(
            argv,
            env={**os.environ, **env, **pair.env},
            cwd=matrix.REPO_ROOT,
            stdout=fh.fileno(),
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://{HOST}:{port}"
            procs.wait_http_ok(f"{base_url}/health", timeout_s=READY_TIMEOUT_S, proc=proc)
            small_peak, _ = phase_peak(proc.pid, base_url, fmt, small, rounds)
            large_peak, seconds = phase_peak(proc.pid, base_url, fmt, large, rounds)
        finally:
            procs.stop_group(proc)
    delta = large_peak - small_peak
    return Result(
        pair.id,
        fmt,
        small,
        large,
        rounds,
        small_peak,
        large_peak,
        delta,
        LIMIT_BYTES,
        delta < LIMIT_BYTES,
        round(seconds, 3),
    )


def _mb(value: int) -> str:
    return f"{value / 1e6:,.1f}"


def markdown(results: Sequence[Result], header: dict[str, Any], name: str | None = None) -> str:
    """The table ``docs/performance.md`` quotes, generated from ``memory.json``; headed by
    ``name`` (a committed run's folder) or else the run id."""
    machine = header.get("machine", {})
    lines = [
        f"# Streaming memory: {name or header.get('run_id', '')}",
        "",
        f"{machine.get('cpu_model') or 'unknown CPU'}, {machine.get('cpus_logical', '?')} CPUs; "
        f"commit {str(header.get('git', {}).get('commit') or '?')[:12]}; "
        f"{results[0].rounds if results else 0} responses per phase, one at a time, "
        "1 worker. RSS: peak of the server's process tree, sampled every 50 ms. "
        f"Goal: grows by less than {_mb(LIMIT_BYTES)} MB from count={SMALL:,} to "
        f"count={LARGE:,}.",
        "",
        "| pair | format | peak RSS MB @1k | peak RSS MB @100k | delta MB | one 100k response s "
        "| goal |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.pair} | {r.format} | {_mb(r.small_peak_rss_bytes)} | "
            f"{_mb(r.large_peak_rss_bytes)} | {_mb(r.delta_bytes)} | {r.large_seconds:.2f} | "
            f"{'pass' if r.passed else '**FAIL**'} |"
        )
    failed = [r for r in results if not r.passed]
    lines += ["", f"{len(results) - len(failed)} of {len(results)} pass."]
    return "\n".join(lines) + "\n"


def load_results(path: Path) -> tuple[dict[str, Any], list[Result]]:
    doc = json.loads(path.read_text())
    return doc, [Result(**r) for r in doc["results"]]


def command(
    args: argparse.Namespace,
    *,
    measure_fn: Callable[..., Result] = measure,
) -> int:
    """``lab memory``: exit 0 when every measured pair and format meets the goal, 1 if not."""
    frameworks = tuple(args.framework or ())
    servers = tuple(args.server or ())
    formats = list(args.format or FORMATS)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise preflight.PreflightError(f"unknown format {unknown[0]!r}; known: {list(FORMATS)}")
    pairs = matrix.pairs(frameworks, servers)
    if not pairs:
        raise preflight.PreflightError("no pair matches --framework/--server")
    run = manifest.standalone(
        "memory",
        args.out,
        {
            "small": SMALL,
            "large": LARGE,
            "rounds": args.rounds,
            "sample_interval_s": 0.05,
            "workers": 1,
            "limit_bytes": LIMIT_BYTES,
        },
    )
    env, out, header = run.env, run.out, run.header
    results: list[Result] = []
    for pair in pairs:
        for fmt in formats:
            result = measure_fn(pair, fmt, env=env, log_dir=out / "raw", rounds=args.rounds)
            results.append(result)
            verdict = "pass" if result.passed else "FAIL"
            print(
                f"{pair.id:24} {fmt:6} @1k {_mb(result.small_peak_rss_bytes):>7} MB  "
                f"@100k {_mb(result.large_peak_rss_bytes):>7} MB  "
                f"delta {_mb(result.delta_bytes):>6} MB  {verdict}",
                flush=True,
            )
            doc = {**header, "results": [r.to_json() for r in results]}
            (out / "memory.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "memory.md").write_text(markdown(results, header))
    print(f"lab memory: {out / 'memory.md'}")
    return 0 if all(r.passed for r in results) else 1

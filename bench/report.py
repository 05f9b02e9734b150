"""``lab report DIR``: prints the tables and writes, into DIR, ``README.md`` (markdown
tables), ``plots/`` (PNG and SVG), ``picker.md`` and ``report.html`` (see
:mod:`bench.reporting`).

Reads ``summary.json`` when it is there, else rebuilds the rows from the cells, so a run
that was interrupted before its summary was written still reports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import stats
from .reporting._data import fixed_rate, interval, offered_text, rank_text
from .results import SCHEMA, RunDir

__all__ = ["command", "load_rows", "render"]


def load_rows(run: RunDir) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifest = run.read_manifest() if run.manifest.exists() else {}
    if run.summary.exists():
        summary = json.loads(run.summary.read_text())
        if summary.get("schema") == SCHEMA["summary"]:
            return manifest, list(summary["rows"])
    method = manifest.get("method", {})
    rows = stats.summarise(
        run.iter_cells(),
        noisy_threshold=float(method.get("noisy_threshold", 0.10)),
        planned_repeats=method.get("repeats"),
    )
    return manifest, rows


def _f(value: Any, scale: float = 1.0, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(float(value) / scale)


def _ratio(ref: dict[str, Any] | None) -> str:
    if not ref or ref.get("rps_ratio") is None:
        return "-"
    return f"{ref['rps_ratio']:.2f}"


def render(manifest: dict[str, Any], rows: list[dict[str, Any]], console: Console) -> None:
    if manifest:
        mach = manifest.get("machine", {})
        pin = manifest.get("pinning", {})
        method = manifest.get("method", {})
        git = manifest.get("git", {})
        pinning = (
            f"server {pin.get('server_cpus')} / client {pin.get('client_cpus')}"
            if pin.get("enabled")
            else "off"
        )
        console.print(
            f"run {manifest.get('run_id')} ({method.get('mode')}): {mach.get('cpu_model')}, "
            f"{mach.get('cpus_logical')} CPUs, kernel {mach.get('kernel')}, Python "
            f"{manifest.get('python', {}).get('version')}, {manifest.get('wrk', {}).get('version')}"
            f"; pinning {pinning}"
            f"; {method.get('duration_s')} s x {method.get('repeats')} repeat(s), "
            f"{method.get('workers')} worker(s); commit {git.get('commit') or 'none'}"
            f"{' (dirty)' if git.get('dirty') else ''}",
            highlight=False,
            markup=False,
        )
    by_board: dict[tuple[str, int, tuple[int, float]], list[dict[str, Any]]] = {}
    for row in rows:
        order = stats.offered_order(stats.offered(row))
        by_board.setdefault((row["scenario"], row["concurrency"], order), []).append(row)
    for (scenario, conc, _), board in sorted(by_board.items()):
        board.sort(
            key=lambda r: (r["role"] != "pair", r["rank"] is None, r["rank"] or 0, r["target"])
        )
        console.print(
            _fixed_rate_table(scenario, conc, board)
            if fixed_rate(board[0])
            else _saturation_table(scenario, conc, board)
        )


def _status(row: dict[str, Any]) -> str:
    status = str(row["outcome"])
    if row["noisy"] and not fixed_rate(row):
        status += " noisy"
    if row.get("rate_held") is False:
        status += " rate-not-held"
    if row["client_saturated"]:
        status += " client-saturated"
    if row.get("latency_censored"):
        status += " latency-censored"
    if (row.get("requests_per_connection") or {}).get("starved"):
        status += " starved-connections"
    if row["outcome"] != "ok" and row["reasons"]:
        status += ": " + escape(row["reasons"][0][:60])
    return status


def _saturation_table(scenario: str, conc: int, board: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{scenario} @ {conc} connections", title_justify="left")
    for name in (
        "#",
        "target",
        "req/s",
        "spread",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "cpu s/1k",
        "RSS MiB",
        "B/resp",
        "/server floor",
        "/fw floor",
        "status",
    ):
        table.add_column(name, justify="left" if name in {"target", "status"} else "right")
    for row in board:
        lat = row["latency_us"]
        table.add_row(
            rank_text(row),
            row["target"] + (" (floor)" if row["role"] == "floor" else ""),
            _f(row["rps"]["median"]),
            _f(row["rps"]["spread"], 0.01, "{:.1f}%"),
            _f(lat.get("p50"), 1000, "{:.2f}"),
            _f(lat.get("p99"), 1000, "{:.2f}"),
            _f(lat.get("p99_9"), 1000, "{:.2f}"),
            _f(row["cpu_s_per_1k"], 1, "{:.3f}"),
            _f(row["peak_rss_bytes"], 2**20, "{:.0f}"),
            _f(row["bytes_per_response"]),
            _ratio(row["floors"].get("server")),
            _ratio(row["floors"].get("framework")),
            _status(row),
        )
    return table


def _fixed_rate_table(scenario: str, conc: int, board: list[dict[str, Any]]) -> Table:
    """A fixed-rate board: ranked by the server's CPU per request, latency from intended
    send time."""
    table = Table(
        title=f"{scenario} at {offered_text(board[0])} ({conc} connections): "
        "ranked by server CPU per request; latency from each request's intended send",
        title_justify="left",
    )
    for name in (
        "#",
        "target",
        "achieved req/s",
        "server cpu us/req",
        "ci95",
        "/raw floor",
        "services us/req",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "status",
    ):
        table.add_column(name, justify="left" if name in {"target", "status"} else "right")
    for row in board:
        lat = row["latency_us"]
        cost = row.get("cost") or {}
        server = cost.get("server_cpu_us_per_request") or {}
        services = cost.get("services_cpu_us_per_request") or {}
        ratio = cost.get("server_cpu_ratio_to_raw") or {}
        table.add_row(
            rank_text(row),
            row["target"] + (" (floor)" if row["role"] == "floor" else ""),
            _f(row["rps"]["median"]),
            _f(server.get("median"), 1, "{:,.1f}"),
            interval(server.get("ci95")),
            _f(ratio.get("median"), 1, "{:.2f}"),
            _f(services.get("median"), 1, "{:,.1f}"),
            _f(lat.get("p50"), 1000, "{:.2f}"),
            _f(lat.get("p99"), 1000, "{:.2f}"),
            _f(lat.get("p99_9"), 1000, "{:.2f}"),
            _status(row),
        )
    return table


def command(directory: str, *, with_plots: bool = True) -> int:
    from . import reporting

    try:
        run = reporting.load(Path(directory))
    except FileNotFoundError:
        print(f"lab report: {directory} holds no benchmark results", file=sys.stderr)
        return 2
    from .reporting import picker
    from .ui import make_console

    console = make_console()
    render(run.manifest, run.rows, console)
    written = reporting.write_report(run, with_plots=with_plots)
    shown = [p for p in written if p.suffix != ".svg" and p.parent == run.path]
    console.print(
        f"lab report: wrote {', '.join(str(p) for p in shown)} and "
        f"{sum(1 for p in written if p.parent.name == 'plots')} plot files in "
        f"{run.path / 'plots'}",
        highlight=False,
        markup=False,
    )
    if lines := picker.picks(run):
        console.print(
            "Picks by workload (why, and the trade-offs: picker.md):\n"
            + "\n".join(f"  {line}" for line in lines),
            highlight=False,
            markup=False,
        )
    return 0

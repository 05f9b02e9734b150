"""The run as the report reads it: the manifest, the summary rows (rebuilt from the cells
when ``summary.json`` is missing) and small formatting helpers shared by every output.

Nothing here computes a new measurement: every figure comes from ``summary.json`` (or the
same rows rebuilt by ``bench.stats`` from ``cells/``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import stats
from bench.manifest import session_orders
from bench.results import SCHEMA, RunDir, stored_method
from lab import matrix

Row = dict[str, Any]
Board = tuple[str, int]  # scenario, concurrency

STREAM_PREFIX = "stream-"
CODEC_PREFIX = "report-"

# How a session ordered its cells (bench.manifest.plan_order), as the session list says it:
# a pair-to-floor ratio from the first kind compares cells measured seconds apart.
ORDER_TEXT = {
    "neighbours": "each pair next to its floors",
    "pairs-then-floors": "every pair, then every floor",
    "unknown": "cell order unknown",
}


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]
    rows: list[Row]  # closed-loop rows (wrk): every board, chart and the picker read these
    cells: list[dict[str, Any]] = field(default_factory=list)
    rate_rows: list[Row] = field(default_factory=list)  # fixed-rate rows (lab bench --rate)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @property
    def method(self) -> dict[str, Any]:
        return stored_method(self.manifest.get("method") or {})

    @property
    def quick(self) -> bool:
        return self.method.get("mode") == "quick"

    @property
    def noisy_threshold(self) -> float:
        return float(self.method.get("noisy_threshold", 0.10))

    def sessions_by_board(self) -> dict[Board, list[int]]:
        """The sessions whose cells a board holds (cells written before sessions were
        recorded count as the first)."""
        out: dict[Board, set[int]] = {}
        for cell in self.cells:
            if stats.offered(cell) is not None:
                continue
            board = (cell["scenario"]["id"], int(cell["concurrency"]))
            out.setdefault(board, set()).add(int(cell.get("session", 0)))
        return {board: sorted(found) for board, found in out.items()}

    def session_lines(self) -> list[str]:
        """One line per session of a run built across several, empty for one session:
        when it started, at which commit, on which machine, and what it measured."""
        sessions = list(self.manifest.get("sessions") or [])
        if len(sessions) < 2:
            return []
        counts: dict[int, int] = {}
        scenarios: dict[int, set[str]] = {}
        for cell in self.cells:
            index = int(cell.get("session", 0))
            counts[index] = counts.get(index, 0) + 1
            scenarios.setdefault(index, set()).add(cell["scenario"]["id"])
        orders = session_orders(self.manifest)
        lines = []
        for index, session in enumerate(sessions):
            # The first session's machine and services are the manifest's own.
            where = self.manifest if index == 0 else session
            machine = where.get("machine") or {}
            commit = str((session.get("git") or {}).get("commit") or "none")[:12]
            changed = session.get("packages_changed") or {}
            measured = ", ".join(sorted(scenarios.get(index, ()))) or "-"
            order = ORDER_TEXT.get(orders[index], orders[index])
            lines.append(
                f"session {index + 1}: {session.get('started_at', '?')}, commit {commit}, "
                f"{machine.get('cpu_model', '?')}, host {machine.get('hostname', '?')}, "
                f"boot {str(machine.get('boot_id') or '?')[:8]}; "
                f"{counts.get(index, 0)} cells: {measured}; {order}"
                + (f"; packages changed: {', '.join(changed)}" if changed else "")
            )
        return lines

    def unmeasured(self) -> list[str]:
        """A full run's matrix scenarios it holds no cell of yet (one being built across
        sessions), in the matrix's order; empty for other modes, which choose a subset."""
        if self.method.get("mode") != "full":
            return []
        measured = {c["scenario"]["id"] for c in self.cells}
        return [s for s in _matrix_order(full_plan=True) if s not in measured]

    def boards(self) -> dict[Board, list[Row]]:
        """Rows by scenario x concurrency, each board sorted: ranked pairs, unranked pairs,
        then floors (ranked, then not)."""
        out: dict[Board, list[Row]] = {}
        for row in self.rows:
            out.setdefault((row["scenario"], int(row["concurrency"])), []).append(row)
        for board in out.values():
            board.sort(key=sort_key)
        return dict(sorted(out.items(), key=lambda kv: (scenario_order(kv[0][0]), kv[0][1])))

    def scenarios(self) -> list[str]:
        return sorted({r["scenario"] for r in self.rows}, key=scenario_order)

    def levels(self, scenario: str) -> list[int]:
        return sorted({int(r["concurrency"]) for r in self.rows if r["scenario"] == scenario})

    def reference_level(self, scenario: str) -> int:
        """The concurrency a one-level view of the scenario uses: the level with most pair
        rows, ties going to the middle of the sweep."""
        levels = self.levels(scenario)
        counts = {
            c: sum(1 for r in self.rows if r["scenario"] == scenario and r["concurrency"] == c)
            for c in levels
        }
        middle = levels[len(levels) // 2]
        return max(levels, key=lambda c: (counts[c], -abs(levels.index(c) - levels.index(middle))))

    def pairs(self) -> list[Row]:
        return [r for r in self.rows if r["role"] != "floor"]


@functools.cache
def _matrix_order(*, full_plan: bool = False) -> tuple[str, ...]:
    """Scenario ids in the matrix's order; with ``full_plan``, only those a full run plans
    (experiment-only scenarios run under ``--experiments``, the floors' control when named)."""
    try:
        from lab.scenarios import scenarios

        return tuple(s.id for s in scenarios() if s.in_matrix or not full_plan)
    except Exception:  # the report must read a run even without the lab's matrix
        return ()


def scenario_order(scenario: str) -> tuple[int, str]:
    """The matrix's order where known (its file order), else alphabetical after."""
    order = _matrix_order()
    return (order.index(scenario) if scenario in order else len(order), scenario)


def sort_key(row: Row) -> tuple[bool, bool, int, float, str]:
    median = row["rps"]["median"]
    return (
        row["role"] == "floor",
        row["rank"] is None,
        row["rank"] or 0,
        -(median or 0.0),
        row["target"],
    )


def load(directory: Path) -> Run:
    """Read a run folder; raises ``FileNotFoundError`` when it holds no results."""
    run = RunDir(directory)
    if not run.path.is_dir() or not (run.manifest.exists() or run.cells.is_dir()):
        raise FileNotFoundError(f"{directory} holds no benchmark results")
    manifest = run.read_manifest() if run.manifest.exists() else {}
    cells = list(run.iter_cells())
    rows: list[Row] | None = None
    if run.summary.exists():
        summary = json.loads(run.summary.read_text())
        if summary.get("schema") == SCHEMA["summary"]:
            rows = list(summary["rows"])
    if rows is None:
        method = manifest.get("method", {})
        rows = stats.summarise(
            cells,
            noisy_threshold=float(method.get("noisy_threshold", 0.10)),
            planned_repeats=method.get("repeats"),
        )
    return Run(
        path=directory,
        manifest=manifest,
        rows=[r for r in rows if not fixed_rate(r)],
        cells=cells,
        rate_rows=[r for r in rows if fixed_rate(r)],
    )


# --- formatting -------------------------------------------------------------------------


def num(value: Any, fmt: str = "{:,.0f}", scale: float = 1.0) -> str:
    return "-" if value is None else fmt.format(float(value) / scale)


def rps(row: Row) -> str:
    return num(row["rps"]["median"])


def rps_and_good(row: Row) -> str:
    """Median requests/s; in an overload scenario, with the good answers' it is ranked by."""
    good = (row.get("good_rps") or {}).get("median")
    return rps(row) if good is None else f"{rps(row)} (good {num(good)})"


def spread(row: Row) -> str:
    return num(row["rps"]["spread"], "{:.1f}%", 0.01)


def ms(row: Row, key: str) -> str:
    return num((row.get("latency_us") or {}).get(key), "{:.2f}", 1000)


def cpu_ms_per_1k(row: Row) -> str:
    """CPU milliseconds per 1,000 requests (the summary stores seconds per 1,000)."""
    return num(row.get("cpu_s_per_1k"), "{:,.1f}", 0.001)


def rss_mib(row: Row) -> str:
    return num(row.get("peak_rss_bytes"), "{:,.0f}", 2**20)


def ratio(row: Row, role: str) -> str:
    ref = (row.get("floors") or {}).get(role)
    if not ref or ref.get("rps_ratio") is None:
        return "-"
    return f"{float(ref['rps_ratio']):.2f}"


def per_round(row: Row, role: str) -> dict[str, Any] | None:
    """The floor ratio taken round by round (median, min, max); None where the row has no
    floor, predates the figure or has one round (the figure is then the ratio itself). In
    runs that play each pair next to its floors this pairs cells measured seconds apart, so
    it is the steadier of the two figures."""
    ref = (row.get("floors") or {}).get(role)
    rounds = ref.get("per_round") if ref else None
    return rounds if rounds and int(rounds.get("rounds", 2)) > 1 else None


def rounds_text(rounds: dict[str, Any] | None) -> str:
    if rounds is None:
        return "-"
    return f"{rounds['median']:.2f} ({rounds['min']:.2f}-{rounds['max']:.2f})"


def flags(row: Row) -> list[str]:
    """What the report must say about a row besides its numbers, most serious first."""
    out: list[str] = []
    if row["outcome"] != "ok":
        out.append(row["outcome"].upper())
    if row.get("noisy"):
        out.append("noisy")
    if row.get("client_saturated"):
        out.append("client-saturated")
    if row.get("latency_censored"):
        out.append("latency-censored")
    if (row.get("requests_per_connection") or {}).get("starved"):
        out.append("starved-connections")
    return out


def status(row: Row, width: int = 80) -> str:
    text = " ".join(flags(row)) or "ok"
    if row["outcome"] != "ok" and row.get("reasons"):
        reason = str(row["reasons"][0])
        text += ": " + (reason if len(reason) <= width else reason[: width - 1] + "…")
        if len(row["reasons"]) > 1:
            text += f" (+{len(row['reasons']) - 1} more)"
    return text


def fixed_rate(row: Row) -> bool:
    """A row of fixed-rate cells (rows carry ``offered`` and ``rate`` as their cells do)."""
    return stats.offered(row) is not None


def offered_text(row: Row) -> str:
    """``1,000 req/s`` or ``50% of each target's capacity``."""
    label = str(stats.offered(row))
    if label.endswith("%"):
        return f"{label} of each target's capacity"
    return f"{float(label):,.0f} req/s"


def interval(ci: list[float] | None, fmt: str = "{:,.1f}") -> str:
    """A ``ci95`` as ``low-high``; ``-`` without one (a single round). Every figure the lab
    bounds is positive: a t interval reaching below 0 (few, disagreeing rounds) shows 0."""
    return "-" if not ci else f"{fmt.format(max(ci[0], 0.0))}-{fmt.format(ci[1])}"


def rank_text(row: Row) -> str:
    """The rank, with ``=`` when the row is tied (overlapping ci95) with another ranked row
    of its table; empty when not ranked."""
    if row["rank"] is None:
        return ""
    return f"{row['rank']}=" if row.get("tied_with") else str(row["rank"])


def label(row: Row) -> str:
    return str(row["target"]) + (" (floor)" if row["role"] == "floor" else "")


def ranked(rows: Iterable[Row]) -> list[Row]:
    return sorted((r for r in rows if r["rank"] is not None), key=lambda r: int(r["rank"]))


def run_line(run: Run) -> str:
    """One sentence saying what was measured where."""
    m = run.manifest
    mach = m.get("machine") or {}
    method = run.method
    git = m.get("git") or {}
    pin = m.get("pinning") or {}
    pinning = (
        f"server on CPU {pin.get('server_cpus')}, client on {pin.get('client_cpus')}"
        if pin.get("enabled")
        else "not pinned"
    )
    instances = int(method["instances"])
    topology = (
        f"wrk to nginx in front of {instances} instances of each target"
        if instances
        else "wrk to each server directly"
    )
    return (
        f"run `{run.run_id}` ({method.get('mode', '?')} mode): {mach.get('cpu_model', '?')}, "
        f"{mach.get('cpus_logical', '?')} CPUs, kernel {mach.get('kernel', '?')}, Python "
        f"{(m.get('python') or {}).get('version', '?')}, "
        f"{(m.get('wrk') or {}).get('version', 'wrk ?')}; {pinning}; "
        f"{method.get('duration_s', '?')} s x {method.get('repeats', '?')} repeat(s), "
        f"{method.get('workers', '?')} worker(s); {topology}; "
        f"commit {str(git.get('commit') or 'none')[:12]}"
        f"{' (dirty)' if git.get('dirty') else ''}, begun {str(m.get('created_at', '?'))[:10]}"
        + (f"; {versions}" if (versions := stack_versions(m)) else "")
    )


def stack_versions(manifest: Mapping[str, Any]) -> str:
    """The installed versions of the matrix's frameworks and servers, as the manifest
    recorded them (``fastapi 0.165.0, ..., uvicorn 0.38.0``)."""
    packages = manifest.get("packages") or {}
    names = dict.fromkeys(
        [f.name for f in matrix.frameworks()] + [s.name for s in matrix.servers()]
    )
    return ", ".join(f"{n} {packages[n]}" for n in names if n in packages)

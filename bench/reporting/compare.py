"""``lab compare OLD NEW [--threshold rps:-5% ...]``: a regression report between two runs.

Rows are matched on (target, scenario, concurrency). For each matched pair of ``ok`` rows
the report gives NEW/OLD for every metric; a threshold ``METRIC:±N%`` is crossed when the
change goes past it in its direction (``rps:-5%``: requests/s fell by more than 5 %;
``p99:+10%``: p99 rose by more than 10 %). A row ``ok`` in OLD but not in NEW is a
regression whatever the thresholds (when any is given). Rows found in one run only are
listed, not compared.

Fixed-rate rows (``lab bench --rate``) are matched on (target, scenario, connections, rate
as offered) and judged by their 95 % intervals, not by thresholds: a difference whose
intervals overlap is "inside the intervals". The figure normalised by the raw floor of the
same round (``cost.server_cpu_ratio_to_raw``) is compared across machines; the absolute one
(CPU per request) only when both runs come from the same machine and boot, since it moves
2x between VMs of one type.

Exit status: 0 when no threshold is crossed, 1 when one is, 2 on a usage error.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import idle, stats
from . import _data as d
from ._data import Row, Run

__all__ = ["METRICS", "Comparison", "Threshold", "command", "compare", "parse_threshold"]

METRICS: dict[str, tuple[str, Callable[[Row], float | None]]] = {
    "rps": ("median requests/s", lambda r: r["rps"]["median"]),
    "p50": ("p50 latency", lambda r: (r.get("latency_us") or {}).get("p50")),
    "p90": ("p90 latency", lambda r: (r.get("latency_us") or {}).get("p90")),
    "p99": ("p99 latency", lambda r: (r.get("latency_us") or {}).get("p99")),
    "p99_9": ("p99.9 latency", lambda r: (r.get("latency_us") or {}).get("p99_9")),
    "cpu": ("CPU per 1k requests", lambda r: r.get("cpu_s_per_1k")),
    "rss": ("peak RSS", lambda r: r.get("peak_rss_bytes")),
}
SHOWN = ("rps", "p99")  # always in the table, besides any metric a threshold names

_THRESHOLD = re.compile(r"^\s*([a-z0-9_.]+)\s*:\s*([+-])\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class Threshold:
    metric: str
    limit: float  # signed fraction: -0.05 = a fall of more than 5 % crosses it

    def crossed(self, change: float) -> bool:
        return change < self.limit if self.limit < 0 else change > self.limit

    def __str__(self) -> str:
        return f"{self.metric}:{self.limit * 100:+g}%"


def parse_threshold(text: str) -> Threshold:
    m = _THRESHOLD.match(text)
    if not m:
        raise ValueError(f"bad threshold {text!r}: expected METRIC:+N% or METRIC:-N%")
    metric = m.group(1).replace(".", "_")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {m.group(1)!r} in {text!r}; known: {', '.join(METRICS)}")
    value = float(m.group(3)) / 100
    return Threshold(metric, -value if m.group(2) == "-" else value)


@dataclass
class Line:
    key: tuple[str, str, int]
    old: Row
    new: Row
    changes: dict[str, float | None]  # metric -> NEW/OLD - 1
    crossed: list[str]  # human-readable reasons
    note: str


@dataclass
class Comparison:
    lines: list[Line]
    only_old: list[Row]
    only_new: list[Row]
    warnings: list[str]

    @property
    def regressions(self) -> list[Line]:
        return [line for line in self.lines if line.crossed]


def _index(run: Run) -> dict[tuple[str, str, int], Row]:
    """The closed-loop rows (``run.rows``); fixed-rate rows are not compared here yet."""
    return {(r["target"], r["scenario"], int(r["concurrency"])): r for r in run.rows}


def _method_warnings(old: Run, new: Run) -> list[str]:
    out = []
    for key in ("mode", "duration_s", "warmup_s", "workers", "repeats", "pin", "instances"):
        a, b = old.method.get(key), new.method.get(key)
        if a != b:
            out.append(f"method.{key} differs: {a!r} in OLD, {b!r} in NEW")
    # Whether the CPUs were held awake (bench/idle.py) moves requests/s by up to a third.
    held = [idle.was_held(run.manifest) for run in (old, new)]
    if held[0] != held[1]:
        out.append(f"idle.held differs: {held[0]!r} in OLD, {held[1]!r} in NEW (bench/idle.py)")
    for part, keys in (
        ("machine", ("cpu_model", "cpus_logical", "kernel")),
        ("services", ("postgresql", "redis")),
    ):
        pa, pb = old.manifest.get(part) or {}, new.manifest.get(part) or {}
        for key in keys:
            if pa.get(key) != pb.get(key):
                out.append(f"{part}.{key} differs: {pa.get(key)!r} in OLD, {pb.get(key)!r} in NEW")
    return out


def compare(old: Run, new: Run, thresholds: Sequence[Threshold]) -> Comparison:
    a, b = _index(old), _index(new)
    lines: list[Line] = []
    for key in sorted(set(a) & set(b), key=lambda k: (d.scenario_order(k[1]), k[2], k[0])):
        ro, rn = a[key], b[key]
        changes: dict[str, float | None] = {}
        crossed: list[str] = []
        note = ""
        if ro["outcome"] == "ok" and rn["outcome"] == "ok":
            for metric, (_, get) in METRICS.items():
                vo, vn = get(ro), get(rn)
                changes[metric] = float(vn) / float(vo) - 1 if vo and vn is not None else None
            for t in thresholds:
                change = changes.get(t.metric)
                if change is not None and t.crossed(change):
                    crossed.append(f"{t.metric} {change * 100:+.1f}% (limit {t})")
            noise = max(
                [old.noisy_threshold]
                + [r["rps"]["spread"] for r in (ro, rn) if r["rps"]["spread"] is not None]
            )
            rps_change = changes.get("rps")
            if rps_change is not None and abs(rps_change) <= noise:
                note = "within noise"
            if ro.get("noisy") or rn.get("noisy"):
                note = (note + "; " if note else "") + "noisy row"
        elif ro["outcome"] == "ok":
            note = f"now {rn['outcome']}"
            if thresholds:
                crossed.append(f"ok in OLD, {rn['outcome']} in NEW")
        else:
            note = f"not compared: {ro['outcome']} in OLD, {rn['outcome']} in NEW"
        lines.append(Line(key, ro, rn, changes, crossed, note))
    only_old = [a[k] for k in sorted(set(a) - set(b))]
    only_new = [b[k] for k in sorted(set(b) - set(a))]
    return Comparison(lines, only_old, only_new, _method_warnings(old, new))


def _rate_index(run: Run) -> dict[tuple[str, str, int, str | None], Row]:
    return {
        (r["target"], r["scenario"], int(r["concurrency"]), stats.offered(r)): r
        for r in run.rate_rows
    }


def same_machine(old: Run, new: Run) -> bool:
    """One machine and one boot: only then do absolute figures compare."""
    a, b = old.manifest.get("machine") or {}, new.manifest.get("machine") or {}
    keys = ("hostname", "boot_id", "cpu_model")
    return all(a.get(k) is not None and a.get(k) == b.get(k) for k in keys)


FIXED_RATE_FIGURES: dict[str, tuple[str, bool, Callable[[Row], dict[str, Any] | None]]] = {
    # name: (label, absolute?, the row's {"median", "ci95"} of it)
    "ratio": (
        "CPU/req over raw floor",
        False,
        lambda r: (r.get("cost") or {}).get("server_cpu_ratio_to_raw"),
    ),
    "cpu": (
        "server CPU µs/req",
        True,
        lambda r: (r.get("cost") or {}).get("server_cpu_us_per_request"),
    ),
}


def judge(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """NEW against OLD for one figure: inside or outside the two 95 % intervals."""
    if not old or not new or old.get("median") is None or new.get("median") is None:
        return "-"
    ratio = float(new["median"]) / float(old["median"]) if old["median"] else None
    shown = "-" if ratio is None else f"x{ratio:.3f}"
    a, b = old.get("ci95"), new.get("ci95")
    if not a or not b:
        return f"{shown} (no interval: one round)"
    if stats.overlap(a, b):
        return f"{shown}, inside the intervals"
    return f"{shown}, {'above' if b[0] > a[1] else 'below'} OLD's interval"


def fixed_rate_lines(old: Run, new: Run) -> list[str]:
    """The fixed-rate section of the comparison (empty when either run has none)."""
    a, b = _rate_index(old), _rate_index(new)
    shared = sorted(set(a) & set(b), key=lambda k: (d.scenario_order(k[1]), str(k[3]), k[0]))
    if not shared:
        return []
    here = same_machine(old, new)
    figures = [f for f, (_, absolute, _) in FIXED_RATE_FIGURES.items() if here or not absolute]
    out = [
        "## Fixed-rate rows",
        "",
        "NEW/OLD of each figure, and whether NEW's 95 % interval overlaps OLD's (a difference "
        "inside the intervals is not shown by these runs). "
        + (
            "Same machine and boot: absolute figures are compared too."
            if here
            else "Different machines (or a reboot): only the figure normalised by the raw "
            "floor measured beside it is compared; absolute microseconds move 2x between VMs."
        ),
        "",
    ]
    head = ["target", "scenario", "rate", *(FIXED_RATE_FIGURES[f][0] for f in figures)]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in shared:
        ro, rn = a[key], b[key]
        cells = [key[0], key[1], str(key[3])]
        for f in figures:
            get = FIXED_RATE_FIGURES[f][2]
            ok = ro["outcome"] == "ok" and rn["outcome"] == "ok"
            cells.append(judge(get(ro), get(rn)) if ok else "not compared (not ok)")
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def _pct(change: float | None) -> str:
    return "-" if change is None else f"{change * 100:+.1f}%"


def _ratio(change: float | None) -> str:
    return "-" if change is None else f"{change + 1:.3f}"


def markdown(old: Run, new: Run, result: Comparison, thresholds: Sequence[Threshold]) -> str:
    metrics = list(SHOWN) + [t.metric for t in thresholds if t.metric not in SHOWN]
    out = [
        f"# Comparison: {old.run_id} -> {new.run_id}",
        "",
        f"OLD: `{old.path}`; NEW: `{new.path}`. Per row (target x scenario x connections): "
        "NEW/OLD and the change; `within noise` when the requests/s change is under the "
        "noisy threshold or either row's spread.",
        "",
        "Thresholds: " + (", ".join(str(t) for t in thresholds) or "none (report only)") + ".",
        "",
    ]
    for w in result.warnings:
        out.append(f"> warning: {w}")
    if result.warnings:
        out.append("")
    head = ["target", "scenario", "conn", "OLD req/s", "NEW req/s"]
    for m in metrics:
        head += [f"{m} NEW/OLD"]
    head += ["verdict"]
    out += ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 3) + "---|"]
    for line in result.lines:
        target, scenario, conc = line.key
        cells = [target, scenario, str(conc), d.rps(line.old), d.rps(line.new)]
        for m in metrics:
            ch = line.changes.get(m)
            cells.append(f"{_ratio(ch)} ({_pct(ch)})" if ch is not None else "-")
        verdict = "REGRESSION: " + "; ".join(line.crossed) if line.crossed else "ok"
        if line.note:
            verdict += f" ({line.note})"
        cells.append(verdict)
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out.append("")
    for title, rows in (("Only in OLD", result.only_old), ("Only in NEW", result.only_new)):
        if rows:
            out.append(f"{title} (not compared): " + ", ".join(r["key"] for r in rows) + ".")
            out.append("")
    out += fixed_rate_lines(old, new)
    n = len(result.regressions)
    out.append(
        f"{len(result.lines)} rows compared, {n} crossing a threshold."
        if thresholds
        else f"{len(result.lines)} rows compared; no thresholds given."
    )
    return "\n".join(out) + "\n"


def command(old_dir: str, new_dir: str, thresholds: Sequence[str], out: str | None = None) -> int:
    try:
        parsed = [parse_threshold(t) for t in thresholds]
    except ValueError as exc:
        print(f"lab compare: {exc}", file=sys.stderr)
        return 2
    runs: list[Run] = []
    for directory in (old_dir, new_dir):
        try:
            runs.append(d.load(Path(directory)))
        except FileNotFoundError:
            print(f"lab compare: {directory} holds no benchmark results", file=sys.stderr)
            return 2
    old, new = runs
    result = compare(old, new, parsed)
    text = markdown(old, new, result, parsed)
    sys.stdout.write(text)
    if out:
        Path(out).write_text(text, encoding="utf-8")
    return 1 if result.regressions else 0

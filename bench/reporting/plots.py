"""Charts from the summary rows, written as PNG and SVG with matplotlib's Agg backend.

- ``rps-<scenario>``: median requests/s by pair (whiskers: min-max over repeats), at the
  scenario's reference concurrency; failed rows shown as an empty bar with their outcome.
- ``latency-<scenario>``: p50, p90, p99, p99.9 by pair (log scale).
- ``sweep-<scenario>``: requests/s and p99 over the concurrency levels (scenarios with
  more than one level only).
- ``memory-streaming``: the server's peak RSS while streaming, beside the same pair's on
  ``json`` when that ran (streaming scenarios only).
- ``codecs``: bytes per response against requests/s for each compression scenario.

A chart whose data is not in the run is not drawn; :func:`missing` says which.
"""

from __future__ import annotations

import io
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import _data as d
from ._data import Row, Run

__all__ = ["Plot", "missing", "write_plots"]


@dataclass
class Plot:
    name: str  # file stem, e.g. rps-json
    title: str
    section: str  # "<scenario>@<concurrency>" or a group name
    svg: str  # the SVG text, without the XML prologue (for inlining)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: smaller, searchable SVG
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.dpi": 100,
        }
    )
    return plt


def _save(plt: Any, fig: Any, out: Path, name: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    plt.rcParams["svg.hashsalt"] = name  # stable ids, distinct between inlined charts
    fig.savefig(out / f"{name}.png", bbox_inches="tight", metadata={"Software": None})
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    (out / f"{name}.svg").write_text(svg)
    return svg[svg.index("<svg") :]


def _color(row: Row) -> str:
    if row["outcome"] != "ok":
        return "#bbbbbb"
    if row["role"] == "floor":
        return "#9ecae1"
    return "#e6550d" if row.get("noisy") else "#3182bd"


def _rps_chart(plt: Any, run: Run, scenario: str, conc: int) -> Any:
    rows = [r for r in run.rows if r["scenario"] == scenario and r["concurrency"] == conc]
    rows.sort(key=d.sort_key, reverse=True)  # barh draws bottom-up: best at the top
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.32 * len(rows)))
    ys = range(len(rows))
    med = [r["rps"]["median"] or 0.0 for r in rows]
    lo = [
        m - (r["rps"]["min"] if r["rps"]["min"] is not None else m)
        for m, r in zip(med, rows, strict=True)
    ]
    hi = [
        (r["rps"]["max"] if r["rps"]["max"] is not None else m) - m
        for m, r in zip(med, rows, strict=True)
    ]
    ax.barh(ys, med, color=[_color(r) for r in rows], xerr=[lo, hi], ecolor="#555555")
    top = max(med, default=0.0) or 1.0
    for y, row, m in zip(ys, rows, med, strict=True):
        note = f"{m:,.0f}" if row["outcome"] == "ok" else row["outcome"]
        if row.get("noisy"):
            note += " (noisy)"
        ax.text(m + top * 0.01, y, note, va="center", fontsize=8)
    ax.set_yticks(list(ys), [d.label(r) for r in rows])
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel("requests/s (median; whiskers min-max over repeats)")
    ax.set_title(f"{scenario} @ {conc} connections: requests/s")
    return fig


def _latency_chart(plt: Any, run: Run, scenario: str, conc: int) -> Any:
    rows = [
        r
        for r in run.rows
        if r["scenario"] == scenario and r["concurrency"] == conc and r["outcome"] == "ok"
    ]
    rows.sort(key=lambda r: r["latency_us"].get("p99") or 0.0, reverse=True)
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.32 * len(rows)))
    marks = (("p50", "o"), ("p90", "s"), ("p99", "D"), ("p99_9", "^"))
    for key, marker in marks:
        xs = [(r["latency_us"].get(key) or float("nan")) / 1000 for r in rows]
        ax.plot(xs, range(len(rows)), marker, label=key.replace("_", "."), alpha=0.85)
    ax.set_yticks(range(len(rows)), [d.label(r) for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale; medians over repeats)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    censored = [r["target"] for r in rows if r.get("latency_censored")]
    title = f"{scenario} @ {conc} connections: latency percentiles"
    if censored:
        title += "\n(latency-censored: " + ", ".join(censored) + ")"
    ax.set_title(title)
    return fig


def _sweep_chart(plt: Any, run: Run, scenario: str) -> Any:
    rows = [r for r in run.rows if r["scenario"] == scenario]
    targets = sorted({r["target"] for r in rows})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for target in targets:
        mine = sorted((r for r in rows if r["target"] == target), key=lambda r: r["concurrency"])
        ok = [r for r in mine if r["outcome"] == "ok"]
        if not ok:
            continue
        style = "--" if ok[0]["role"] == "floor" else "-"
        xs = [r["concurrency"] for r in ok]
        ax1.plot(xs, [r["rps"]["median"] for r in ok], style, marker="o", label=target)
        ax2.plot(
            xs, [(r["latency_us"].get("p99") or float("nan")) / 1000 for r in ok], style, marker="o"
        )
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("connections")
        ax.set_xticks(run.levels(scenario), [str(c) for c in run.levels(scenario)])
    ax1.set_ylabel("requests/s (median)")
    ax2.set_ylabel("p99 latency, ms")
    ax2.set_yscale("log")
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(f"{scenario}: concurrency sweep (failed points left out)")
    fig.tight_layout()
    return fig


def _memory_chart(plt: Any, run: Run, streams: list[Row]) -> Any:
    base = {
        r["target"]: r
        for r in run.rows
        if r["scenario"] == "json" and r["outcome"] == "ok" and r.get("peak_rss_bytes")
    }
    streams = sorted(streams, key=lambda r: (r["scenario"], -(r.get("peak_rss_bytes") or 0)))
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.4 * len(streams)))
    ys = list(range(len(streams)))
    ax.barh(
        [y + 0.2 for y in ys],
        [(r.get("peak_rss_bytes") or 0) / 2**20 for r in streams],
        height=0.4,
        color=[_color(r) for r in streams],
        label="peak RSS while streaming",
    )
    if base:
        ax.barh(
            [y - 0.2 for y in ys],
            [
                (base[r["target"]]["peak_rss_bytes"] / 2**20) if r["target"] in base else 0
                for r in streams
            ],
            height=0.4,
            color="#cccccc",
            label="peak RSS on json (same pair)",
        )
    ax.set_yticks(ys, [f"{d.label(r)} [{r['scenario']} c{r['concurrency']}]" for r in streams])
    ax.set_xlabel("server process tree, peak RSS (MiB)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title("Server memory while streaming")
    return fig


def _codec_chart(plt: Any, run: Run, codecs: list[Row]) -> Any:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    markers = {"gzip": "o", "br": "s", "zstd": "D"}
    sizes = {
        s: statistics.median(r["bytes_per_response"] for r in codecs if r["scenario"] == s)
        for s in {r["scenario"] for r in codecs}
    }
    gzip = sizes.get(f"{d.CODEC_PREFIX}gzip")
    for scenario in sorted(sizes):
        rows = [r for r in codecs if r["scenario"] == scenario]
        codec = scenario.removeprefix(d.CODEC_PREFIX)
        label = f"{codec}: {sizes[scenario] / 1024:,.1f} KiB"
        if gzip and codec != "gzip":
            label += f" ({(sizes[scenario] / gzip - 1) * 100:+.1f}% vs gzip)"
        ax.scatter(
            [r["bytes_per_response"] / 1024 for r in rows],
            [r["rps"]["median"] for r in rows],
            marker=markers.get(codec, "^"),
            label=label,
        )
        for r in rows:
            ax.annotate(
                r["target"],
                (r["bytes_per_response"] / 1024, r["rps"]["median"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("KiB per response as sent (fewer = more bytes saved)")
    ax.set_ylabel("requests/s (median)")
    ax.legend(title="codec: median bytes per response over pairs", fontsize=8)
    ax.set_title("Compression: bytes on the wire against throughput")
    return fig


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def missing(run: Run) -> list[str]:
    """The optional charts the run's data does not allow, as sentences."""
    out = []
    if not any(len(run.levels(s)) > 1 for s in run.scenarios()):
        out.append("Concurrency sweep: not in this run (every scenario ran at one level).")
    if not _streams(run):
        out.append("Server memory while streaming: not in this run (no streaming scenario).")
    if not _codecs(run):
        out.append("Bytes vs throughput per codec: not in this run (no report-<codec> scenario).")
    return out


def _streams(run: Run) -> list[Row]:
    return [
        r
        for r in run.pairs()
        if r["scenario"].startswith(d.STREAM_PREFIX) and r.get("peak_rss_bytes")
    ]


def _codecs(run: Run) -> list[Row]:
    return [
        r
        for r in run.pairs()
        if r["scenario"].startswith(d.CODEC_PREFIX)
        and r["outcome"] == "ok"
        and r.get("bytes_per_response")
        and r["rps"]["median"]
    ]


def write_plots(run: Run, out: Path) -> list[Plot]:
    """Draw every chart the data allows into ``out`` (PNG and SVG); return them in order."""
    plt = _pyplot()
    plots: list[Plot] = []

    def add(name: str, title: str, section: str, draw: Callable[[], Any]) -> None:
        name = _safe(name)
        plots.append(Plot(name, title, section, _save(plt, draw(), out, name)))

    for scenario in run.scenarios():
        conc = run.reference_level(scenario)
        section = f"{scenario}@{conc}"
        add(
            f"rps-{scenario}-c{conc}",
            f"{scenario} @ {conc}: requests/s by pair",
            section,
            partial(_rps_chart, plt, run, scenario, conc),
        )
        if any(
            r["outcome"] == "ok"
            for r in run.rows
            if r["scenario"] == scenario and r["concurrency"] == conc
        ):
            add(
                f"latency-{scenario}-c{conc}",
                f"{scenario} @ {conc}: latency percentiles",
                section,
                partial(_latency_chart, plt, run, scenario, conc),
            )
        if len(run.levels(scenario)) > 1:
            add(
                f"sweep-{scenario}",
                f"{scenario}: concurrency sweep",
                "sweep",
                partial(_sweep_chart, plt, run, scenario),
            )
    streams = _streams(run)
    if streams:
        add(
            "memory-streaming",
            "Server memory while streaming",
            "memory",
            lambda: _memory_chart(plt, run, streams),
        )
    codecs = _codecs(run)
    if codecs:
        add(
            "codecs",
            "Bytes per response vs throughput per codec",
            "codecs",
            lambda: _codec_chart(plt, run, codecs),
        )
    return plots

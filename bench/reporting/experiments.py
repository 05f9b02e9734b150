"""The technique experiments as the report reads them: one table and one chart per experiment,
every variant read against the experiment's baseline, measured in the same run.

- :func:`markdown` is the section for one experiment (``experiments.md`` in the run folder,
  and the generated block of ``docs/techniques/<page>.md``);
- :func:`write_plot` draws its chart (requests/s by variant with min-max whiskers; peak RSS
  for the streaming experiment; bytes per response against requests/s for compression);
- :func:`update_pages` rewrites the block between the markers of each technique page, so a
  page's numbers always come from one named run, never from a hand.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.experiments import Experiment, experiments

from .. import docblock
from . import _data as d
from ._data import Row, Run

__all__ = ["BEGIN", "END", "markdown", "rows_of", "update_pages", "write_plot"]

BEGIN = "<!-- lab:results begin -->"
END = "<!-- lab:results end -->"


def rows_of(run: Run, exp: Experiment) -> list[Row]:
    """The run's rows for ``exp``, in the declared order of its variants."""
    order = {v.name: i for i, v in enumerate(exp.variants)}
    rows = [r for r in run.rows if r.get("experiment") == exp.name]
    return sorted(
        rows,
        key=lambda r: (d.scenario_order(r["scenario"]), r["concurrency"], order[r["variant"]]),
    )


def in_run(run: Run) -> list[Experiment]:
    names = {r.get("experiment") for r in run.rows}
    return [e for e in experiments() if e.name in names]


def baseline_row(rows: Iterable[Row], exp: Experiment, row: Row) -> Row | None:
    """The baseline's row for ``row``: same scenario and level, or, where the variants run
    different scenarios (compression codecs), the baseline's only row."""
    base = [r for r in rows if r["variant"] == exp.baseline]
    same = [
        r
        for r in base
        if r["scenario"] == row["scenario"] and r["concurrency"] == row["concurrency"]
    ]
    if same:
        return same[0]
    return base[0] if len(base) == 1 else None


def _ratio(row: Row, base: Row | None) -> str:
    if base is None:
        return "-"
    a, b = row["rps"]["median"], base["rps"]["median"]
    if row["outcome"] != "ok" or base["outcome"] != "ok" or not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def _kib(row: Row) -> str:
    bpr = row.get("bytes_per_response")
    return "-" if bpr is None else f"{bpr / 1024:,.1f}"


def _counts(table: dict[str, int] | None) -> str:
    if not table:
        return ""
    total = sum(table.values())
    return ", ".join(f"{k} {v / total:.0%}" for k, v in table.items())


def _good(row: Row, base: Row | None) -> list[str]:
    """Good answers/s (an overload scenario's figure), its spread, and its ratio to the
    baseline's."""
    good, theirs = row.get("good_rps") or {}, (base or {}).get("good_rps") or {}
    a, b = good.get("median"), theirs.get("median")
    ok = row["outcome"] == "ok" and base is not None and base["outcome"] == "ok"
    spread = good.get("spread")
    return [
        d.num(a),
        "-" if spread is None else f"{spread:.0%}",
        f"{a / b:.2f}x" if ok and a and b else "-",
    ]


def markdown(run: Run, exp: Experiment, *, plot: str | None = None) -> str:
    """The experiment's table (and chart link) from ``run``."""
    rows = rows_of(run, exp)
    docs = {v.name: v.doc for v in exp.variants}
    probe = any(r.get("probe") for r in rows)
    overload = any(r.get("good_rps") for r in rows)
    head = [
        "variant",
        "scenario",
        "conns",
        *(["good/s", "spread", f"good x {exp.baseline}"] if overload else []),
        "req/s",
        "spread",
        f"x {exp.baseline}",
        "p50 ms",
        "p99 ms",
        "CPU ms/1k",
        "peak RSS MiB",
        "KiB/resp",
    ]
    if probe:
        head += [f"probe {exp.probe} p50 ms", "probe p99 ms"]
    head += ["statuses / X-Cache", "outcome"]
    cpus = (
        f" The server ran on CPUs {list(exp.server_cpus)} for this experiment."
        if exp.server_cpus
        else ""
    )
    lines = [
        f"{d.run_line(run)}. Pair `{exp.pair}` unless the variant names another; every "
        f"variant ran in the same run, rounds interleaved.{cpus}"
        + (
            " Overload scenario: `good/s` counts the answers that did their job (here a 200"
            " whose calls all answered); `req/s` counts every answer, a quick 503 too."
            if overload
            else ""
        ),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for row in rows:
        base = baseline_row(rows, exp, row)
        cells = [
            f"**{row['variant']}**" if row["variant"] == exp.baseline else row["variant"],
            row["scenario"],
            str(row["concurrency"]),
            *(_good(row, base) if overload else []),
            d.rps(row),
            d.spread(row),
            "1.00x (baseline)" if row["variant"] == exp.baseline else _ratio(row, base),
            d.ms(row, "p50"),
            d.ms(row, "p99"),
            d.cpu_ms_per_1k(row),
            d.rss_mib(row),
            _kib(row),
        ]
        if probe:
            pr = row.get("probe") or {}
            cells += [d.num(pr.get("p50_ms"), "{:,.2f}"), d.num(pr.get("p99_ms"), "{:,.2f}")]
        counts = _counts(row.get("statuses")) if len(row.get("statuses") or {}) > 1 else ""
        xcache = _counts(row.get("header_counts"))
        cells += ["; ".join(x for x in (counts, xcache) if x) or "-", d.status(row, 60)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Variants: "
        + "; ".join(
            f"`{v.name}`"
            + (f" ({v.pair})" if v.pair else "")
            + (f": {docs[v.name]}" if docs[v.name] else "")
            for v in exp.variants
        )
        + "."
    )
    if plot:
        lines += ["", f"![{exp.title}]({plot})"]
    return "\n".join(lines) + "\n"


def write_plot(run: Run, exp: Experiment, out: Path) -> Path | None:
    """Draw the experiment's chart as ``out/experiment-<name>.png`` and ``.svg``."""
    rows = [r for r in rows_of(run, exp) if r["outcome"] == "ok" and r["rps"]["median"]]
    if not rows:
        return None
    from .plots import _pyplot, _save

    plt = _pyplot()
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    if exp.name == "compression":
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for r in rows:
            ax.scatter(r["bytes_per_response"] / 1024, r["rps"]["median"])
            ax.annotate(
                r["variant"],
                (r["bytes_per_response"] / 1024, r["rps"]["median"]),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel("KiB per response (smaller is better)")
        ax.set_ylabel("requests/s (median)")
    else:
        metric = "rss" if exp.name == "streaming" else "rps"
        fig, axes = plt.subplots(
            1, len(scenarios), figsize=(3.2 * len(scenarios) + 1, 3.4), squeeze=False
        )
        for ax, sc in zip(axes[0], scenarios, strict=True):
            these = [r for r in rows if r["scenario"] == sc]
            names = [r["variant"] for r in these]
            if metric == "rss":
                values = [(r["peak_rss_bytes"] or 0) / 2**20 for r in these]
                ax.bar(names, values, color="#4c72b0")
                ax.set_ylabel("server peak RSS, MiB")
            elif any(r.get("good_rps") for r in these):  # overload: every answer vs good ones
                good = [float((r.get("good_rps") or {}).get("median") or 0) for r in these]
                every = [float(r["rps"]["median"]) for r in these]
                at = list(range(len(names)))
                ax.bar([x - 0.2 for x in at], every, width=0.4, color="#bbbbbb", label="all")
                ax.bar([x + 0.2 for x in at], good, width=0.4, color="#4c72b0", label="good")
                ax.set_xticks(at, names)
                ax.legend(fontsize=8)
                ax.set_ylabel("answers/s (median)")
            else:
                med = [float(r["rps"]["median"]) for r in these]
                lo = [m - float(r["rps"]["min"]) for m, r in zip(med, these, strict=True)]
                hi = [float(r["rps"]["max"]) - m for m, r in zip(med, these, strict=True)]
                colors = ["#dd8452" if n == exp.baseline else "#4c72b0" for n in names]
                ax.bar(names, med, yerr=[lo, hi], capsize=3, color=colors)
                ax.set_ylabel("requests/s (median, min-max)")
            ax.set_title(sc, fontsize=9)
            ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle(exp.title, fontsize=10)
    fig.tight_layout()
    name = f"experiment-{exp.name}"
    _save(plt, fig, out, name)
    return out / f"{name}.png"


def write_run_section(run: Run) -> list[Path]:
    """``experiments.md`` and the charts in the run folder, when the run has experiments."""
    chosen = in_run(run)
    if not chosen:
        return []
    parts = ["# Technique experiments\n"]
    written: list[Path] = []
    for exp in chosen:
        png = write_plot(run, exp, run.path / "plots")
        if png is not None:
            written += [png, png.with_suffix(".svg")]
        parts.append(f"## {exp.title}\n\nPage: `docs/techniques/{exp.page}.md`\n")
        parts.append(markdown(run, exp, plot=f"plots/{png.name}" if png else None))
    path = run.path / "experiments.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return [path, *written]


def update_pages(run: Run, docs: Path, *, link_base: str) -> list[Path]:
    """Fill the generated block of every technique page the run measured; copy its chart to
    ``docs/img/``. ``link_base`` is the run folder as a link from ``docs`` (for the source)."""
    written: list[Path] = []
    for exp in in_run(run):
        page = docs / f"{exp.page}.md"
        if not page.exists():
            raise FileNotFoundError(f"{page}: the technique page is missing")
        png = write_plot(run, exp, run.path / "plots")
        plot = None
        if png is not None:
            img = docs / "img"
            img.mkdir(parents=True, exist_ok=True)
            for src in (png, png.with_suffix(".svg")):
                shutil.copyfile(src, img / src.name)
                written.append(img / src.name)
            plot = f"img/{png.with_suffix('.svg').name}"
        body = markdown(run, exp, plot=plot)
        source = f"[{run.run_id}]({link_base}/experiments.md)"
        body += f"\nSource: {source} (generated by `lab techniques`).\n"
        docblock.fill_file(page, BEGIN, END, body)
        written.append(page)
    return written


def lookup(run: Run, experiment: str, variant: str, scenario: str) -> Row | None:
    for r in run.rows:
        if (
            r.get("experiment") == experiment
            and r.get("variant") == variant
            and r["scenario"] == scenario
        ):
            return r
    return None


def metric_value(row: Row, metric: str) -> float | None:
    """A row's figure for a claim's metric (None when not measured)."""
    value: Any
    if metric == "rps":
        value = row["rps"]["median"]
    elif metric == "good_rps":
        value = (row.get("good_rps") or {}).get("median")
    elif metric in {"p50", "p99"}:
        value = row["latency_us"].get(metric)
    elif metric == "cpu":
        value = row.get("cpu_s_per_1k")
    elif metric == "rss":
        value = row.get("peak_rss_bytes")
    elif metric == "bytes":
        value = row.get("bytes_per_response")
    elif metric == "probe_p99":
        value = (row.get("probe") or {}).get("p99_ms")
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return None if value is None else float(value)

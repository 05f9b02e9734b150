"""Markdown tables: per scenario x concurrency, pairs ranked by median requests/s, then the
unranked (failed, errored, incomplete) pairs, then the floors. Nothing is left out: a failed
or noisy row is printed with its flag and its first reason."""

from __future__ import annotations

import statistics

from bench import stats

from . import _data as d
from ._data import Row, Run, rank_text

COLUMNS = (
    "#",
    "target",
    "req/s (median)",
    "spread",
    "p50 ms",
    "p99 ms",
    "CPU-ms / 1k req",
    "peak RSS MiB",
    "x server floor",
    "x fw floor",
    "x fw by round",
    "status",
)


def md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row_cells(row: Row) -> list[str]:
    return [
        rank_text(row),
        d.label(row),
        d.rps_and_good(row),
        d.spread(row),
        d.ms(row, "p50"),
        d.ms(row, "p99"),
        d.cpu_ms_per_1k(row),
        d.rss_mib(row),
        d.ratio(row, "server"),
        d.ratio(row, "framework"),
        d.rounds_text(d.per_round(row, "framework")),
        d.status(row),
    ]


def board_table(rows: list[Row]) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if c in {"target", "status"} else "---:" for c in COLUMNS) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(md_escape(c) for c in row_cells(row)) + " |")
    return "\n".join(lines)


RATE_COLUMNS = (
    "#",
    "target",
    "achieved req/s",
    "server CPU µs/req",
    "ci95",
    "x raw floor (CPU)",
    "x raw ci95",
    "services µs/req",
    "p50 ms",
    "p99 ms",
    "p99 ci95",
    "p99.9 ms",
    "status",
)


def rate_row_cells(row: Row) -> list[str]:
    cost = row.get("cost") or {}
    server = cost.get("server_cpu_us_per_request") or {}
    services = cost.get("services_cpu_us_per_request") or {}
    ratio = cost.get("server_cpu_ratio_to_raw") or {}
    return [
        rank_text(row),
        d.label(row),
        d.rps(row),
        d.num(server.get("median"), "{:,.1f}"),
        d.interval(server.get("ci95")),
        d.num(ratio.get("median"), "{:.2f}"),
        d.interval(ratio.get("ci95"), "{:.2f}"),
        d.num(services.get("median"), "{:,.1f}"),
        d.ms(row, "p50"),
        d.ms(row, "p99"),
        d.interval(_ms((row.get("latency_ci95_us") or {}).get("p99")), "{:.2f}"),
        d.ms(row, "p99_9"),
        d.status(row) + ("" if row.get("rate_held") is not False else " rate-not-held"),
    ]


def _ms(interval_us: list[float] | None) -> list[float] | None:
    return None if not interval_us else [v / 1000 for v in interval_us]


def rate_tables(run: Run) -> list[str]:
    """The fixed-rate section: one table per scenario x connections x offered rate, ranked
    by the server's CPU per request."""
    if not run.rate_rows:
        return []
    boards: dict[tuple[str, int, tuple[int, float]], list[Row]] = {}
    for row in run.rate_rows:
        board = (
            row["scenario"],
            int(row["concurrency"]),
            stats.offered_order(stats.offered(row)),
        )
        boards.setdefault(board, []).append(row)
    out = [
        "## Fixed-rate cells",
        "",
        "Each row offered the same requests/s; ranked by the server's CPU per request (lower "
        "first) among rows that held at least 98 % of the rate. Latency is timed from each "
        "request's intended send (no coordinated omission). `x raw floor (CPU)` is the CPU "
        "per request over the raw server callable's at the same rate, paired round by round; "
        "`ci95` are t intervals over the rounds: overlapping intervals are ties, marked `=` "
        "after the rank. How to read "
        'it: docs/reading-results.md, "Fixed-rate cells".',
        "",
    ]
    for (scenario, conc, _), rows in sorted(boards.items()):
        rows.sort(key=d.sort_key)
        out += [f"### {scenario} at {d.offered_text(rows[0])} ({conc} connections)", ""]
        out += [
            "| " + " | ".join(RATE_COLUMNS) + " |",
            "|"
            + "|".join("---" if c in {"target", "status"} else "---:" for c in RATE_COLUMNS)
            + "|",
        ]
        out += ["| " + " | ".join(md_escape(c) for c in rate_row_cells(r)) + " |" for r in rows]
        out += [""]
    return out


def _half_width(ci: list[float] | None, centre: float | None) -> float | None:
    """A ``ci95``'s half-width over the figure it surrounds (0.1: ±10 %)."""
    if not ci or not centre:
        return None
    return (ci[1] - ci[0]) / 2 / abs(centre)


def _pct_range(values: list[float]) -> str:
    return f"median {statistics.median(values):.0%}, {min(values):.0%}-{max(values):.0%}"


def steadiness(run: Run) -> list[str]:
    """How steady the run's figures were, per kind (docs/reading-results.md sets targets
    for them): the spread of each fixed-rate cost over its rounds, the intervals of the
    ratios to the raw floor and of saturation requests/s, the rates held, and the least
    served connection. Only rows of more than one round count."""
    lines: list[str] = []
    for scenario in sorted({r["scenario"] for r in run.rate_rows}):
        for label in sorted(
            {stats.offered(r) for r in run.rate_rows if r["scenario"] == scenario},
            key=lambda o: stats.offered_order(o),
        ):
            rows = [
                r
                for r in run.rate_rows
                if r["scenario"] == scenario and stats.offered(r) == label and r["role"] == "pair"
            ]
            costs = [
                c["server_cpu_us_per_request"]
                for r in rows
                if (c := r.get("cost")) and c["server_cpu_us_per_request"]["spread"] is not None
            ]
            ratios = [
                h
                for r in rows
                if (ratio := (r.get("cost") or {}).get("server_cpu_ratio_to_raw"))
                and (h := _half_width(ratio.get("ci95"), ratio.get("median"))) is not None
            ]
            if not costs:
                continue
            spreads = [float(c["spread"]) for c in costs]
            within = sum(1 for v in spreads if v <= 0.05)
            line = (
                f"- `{scenario}` at {d.offered_text(rows[0])}: server CPU per request spread "
                f"over the rounds {_pct_range(spreads)} ({within} of {len(spreads)} pairs "
                "within 5 %)"
            )
            if ratios:
                line += f"; `x raw floor` ci95 half-width {_pct_range(ratios)}"
            held = sum(1 for r in rows if r.get("rate_held"))
            lines.append(line + f"; rate held by {held} of {len(rows)} pairs.")
    for (scenario, conc), rows in run.boards().items():
        pairs = [r for r in rows if r["role"] == "pair" and r["outcome"] == "ok"]
        widths = [
            h
            for r in pairs
            if (h := _half_width(r["rps"].get("ci95"), r["rps"].get("median"))) is not None
        ]
        if not widths:
            continue
        within = sum(1 for w in widths if w <= 0.10)
        line = (
            f"- `{scenario}` at {conc} connections, closed loop: requests/s ci95 half-width "
            f"{_pct_range(widths)} ({within} of {len(widths)} pairs within 10 %)"
        )
        shares = [
            (float(rpc["min_share_of_median"]), r["target"])
            for r in pairs
            if (rpc := r.get("requests_per_connection"))
            and rpc.get("min_share_of_median") is not None
            and not rpc.get("reconnected")
        ]
        if shares:
            least, who = min(shares)
            line += f"; the least served connection got {least:.0%} of the median's ({who})"
        lines.append(line + ".")
    if not lines:
        return []
    return [
        "## How steady this run was",
        "",
        "Pairs only, rows of more than one round; the targets are in docs/reading-results.md "
        '("How steady").',
        "",
        *lines,
        "",
    ]


def instruction_tables(run: Run) -> list[str]:
    """The run's instruction counts (``lab bench --reference`` writes instructions.json
    beside the cells), as ``lab instructions`` prints them, one heading level down."""
    path = run.path / "instructions.json"
    if not path.exists():
        return []
    from bench import instructions

    header, results = instructions.load_results(path)
    text = instructions.markdown(results, header, name=run.run_id)
    return ["#" + line if line.startswith("#") else line for line in text.splitlines()] + [""]


def counts_line(run: Run) -> str:
    outcomes: dict[str, int] = {}
    for row in run.rows:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    noisy = sum(1 for r in run.rows if r.get("noisy"))
    censored = sum(1 for r in run.rows if r.get("latency_censored"))
    saturated = sum(1 for r in run.rows if r.get("client_saturated"))
    parts = [f"{n} {k}" for k, n in sorted(outcomes.items())]
    return (
        f"{len(run.rows)} rows: {', '.join(parts) or 'none'}; {noisy} noisy, "
        f"{censored} latency-censored, {saturated} client-saturated."
    )


def markdown(run: Run, *, plots: dict[str, list[str]] | None = None) -> str:
    """``README.md`` for a run folder. ``plots`` maps a section (scenario id or a plot
    group) to the plot files (relative paths) shown under it."""
    plots = plots or {}
    out = [f"# Benchmark results: {run.run_id}", "", d.run_line(run) + ".", ""]
    if run.quick:
        out += [
            "> **Quick mode**: one short repeat per cell, so spread is not assessed and small "
            "differences are within this machine's noise. Use a full run to decide.",
            "",
        ]
    out += [
        counts_line(run),
        "",
        "Ranked by median requests/s among rows whose repeats all finished `ok` (pairs and "
        "floors separately); `2=` marks a rank tied with another row, their 95 % intervals "
        "overlapping. `spread` = (max - min) / median over repeats; **noisy** above "
        f"{run.noisy_threshold:.0%}. CPU-ms / 1k req is the server's process tree's CPU time "
        "per 1,000 requests; peak RSS the largest sum over the tree (an upper bound with "
        "forked workers). `x server floor` = requests/s over the raw server's on the same "
        "scenario; `x fw floor` over the framework's hello world; `x fw by round` the same "
        "ratio taken round by round, median (min-max). How to read all this: "
        "docs/reading-results.md.",
        "",
    ]
    unmeasured = run.unmeasured()
    if unmeasured and run.cells:
        out += [
            f"> **Not yet measured in this run** ({len(unmeasured)} of the matrix's "
            f"scenarios): {', '.join(unmeasured)}. A full run too long for one sitting is "
            "built a few scenarios at a time (`lab bench --scenario ... --out` this folder).",
            "",
        ]
    sessions = run.session_lines()
    if sessions:
        out += [
            "Built across sessions (`lab bench --out` resumed): each measured the cells below "
            "on the machine it names. A table whose cells come from more than one session "
            "says so; its ratios then compare cells measured at different times.",
            "",
            *[f"- {line}" for line in sessions],
            "",
        ]
    by_board = run.sessions_by_board()
    for (scenario, conc), rows in run.boards().items():
        out += [f"## {scenario} @ {conc} connections", ""]
        spanned = by_board.get((scenario, conc), [])
        if len(spanned) > 1:
            names = ", ".join(str(i + 1) for i in spanned)
            out += [f"> Measured across sessions {names}.", ""]
        out += [board_table(rows), ""]
        for name in plots.get(f"{scenario}@{conc}", []):
            out += [f"![{name}]({name})", ""]
    out += rate_tables(run)
    out += steadiness(run)
    out += instruction_tables(run)
    extra = [k for k in plots if "@" not in k]
    if extra:
        out += ["## Plots", ""]
        for key in extra:
            for name in plots[key]:
                out += [f"![{name}]({name})", ""]
    return "\n".join(out).rstrip() + "\n"

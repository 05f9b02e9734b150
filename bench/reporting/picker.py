""" "Which framework should I pick?": a page generated from one run's numbers, by workload
profile. Each profile names the scenarios that stand for it; a pair's score is the geometric
mean, over those scenarios (at each one's reference concurrency), of its median requests/s
over the best pair's. Only pairs with an ``ok`` row on every board of the profile are
scored; the others are named as not comparable. Every recommendation prints the numbers it
rests on, and says when the run cannot support it (quick mode, noisy rows, a lead smaller
than the spread)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import _data as d
from ._data import Board, Row, Run

__all__ = ["PROFILES", "Profile", "markdown", "picks"]


@dataclass(frozen=True)
class Profile:
    title: str
    scenarios: tuple[str, ...]
    about: str
    kinds: tuple[str, ...] = ()  # restrict to these interface kinds (empty: all)


PROFILES = (
    Profile(
        "I/O-bound with a database",
        ("db", "queries-20", "updates-5", "fortunes", "items-id", "items-page", "items-batch"),
        "most time is spent waiting on PostgreSQL: pooled queries, pages, batched reads.",
    ),
    Profile(
        "CPU-bound",
        ("cpu",),
        "handlers burn CPU (here: work offloaded from the event loop).",
    ),
    Profile(
        "Streaming",
        ("stream-items",),
        "large responses streamed from a server-side cursor: throughput and server memory.",
    ),
    Profile(
        "Many small JSON responses",
        ("json", "plaintext", "cached-items-hit", "items-id"),
        "tiny payloads at high rates: per-request overhead of framework and server dominates.",
    ),
    Profile(
        "Sync codebase (WSGI)",
        ("json", "db", "fortunes", "items-id", "stream-items", "cpu"),
        "code that must stay synchronous (sync drivers, libraries): WSGI pairs only.",
        kinds=("wsgi",),
    ),
)


@dataclass
class Score:
    target: str
    score: float
    rows: list[Row]


def _boards(run: Run, profile: Profile) -> list[Board]:
    present = set(run.scenarios())
    return [(s, run.reference_level(s)) for s in profile.scenarios if s in present]


def _candidates(run: Run, profile: Profile) -> list[str]:
    return sorted(
        {r["target"] for r in run.pairs() if not profile.kinds or r.get("kind") in profile.kinds}
    )


def score(run: Run, profile: Profile) -> tuple[list[Score], list[str], list[Board]]:
    """Scored pairs (best first), pairs left out (with why) and the boards used."""
    boards = _boards(run, profile)
    if not boards:
        return [], [], []
    by = {(r["target"], r["scenario"], r["concurrency"]): r for r in run.pairs()}
    best = {
        b: max(
            (
                float(r["rps"]["median"])
                for r in run.pairs()
                if (r["scenario"], r["concurrency"]) == b
                and r["outcome"] == "ok"
                and r["rps"]["median"]
                and (not profile.kinds or r.get("kind") in profile.kinds)
            ),
            default=0.0,
        )
        for b in boards
    }
    scores: list[Score] = []
    left_out: list[str] = []
    for target in _candidates(run, profile):
        rows = [by.get((target, s, c)) for s, c in boards]
        bad = [
            f"{s}: {'not run' if r is None else r['outcome']}"
            for (s, _), r in zip(boards, rows, strict=True)
            if r is None or r["outcome"] != "ok" or not r["rps"]["median"]
        ]
        if bad:
            left_out.append(f"{target} ({'; '.join(bad)})")
            continue
        ok_rows = [r for r in rows if r is not None]
        logs = [
            math.log(float(r["rps"]["median"]) / best[(r["scenario"], r["concurrency"])])
            for r in ok_rows
        ]
        scores.append(Score(target, math.exp(sum(logs) / len(logs)), ok_rows))
    scores.sort(key=lambda s: -s.score)
    return scores, left_out, boards


def _numbers(row: Row) -> str:
    return (
        f"{row['scenario']} @ {row['concurrency']}: {d.rps(row)} req/s"
        + (f" (spread {d.spread(row)})" if row["rps"]["spread"] is not None else "")
        + f", p99 {d.ms(row, 'p99')} ms, {d.cpu_ms_per_1k(row)} CPU-ms/1k req, "
        f"peak RSS {d.rss_mib(row)} MiB" + (f" [{' '.join(d.flags(row))}]" if d.flags(row) else "")
    )


def _lead_is_noise(a: Score, b: Score, threshold: float) -> bool:
    """The leader's margin is within the run's noise: under the noisy threshold, under the
    larger spread of the rows compared, or inside the 95 % intervals on every scenario (the
    leader's row tied with the runner-up's in each table)."""
    spreads = [float(r["rps"]["spread"]) for r in a.rows + b.rows if r["rps"]["spread"] is not None]
    margin = a.score / b.score - 1 if b.score else math.inf
    tied = bool(a.rows) and all(b.target in (r.get("tied_with") or ()) for r in a.rows)
    return tied or margin <= max([threshold, *spreads])


def _tradeoffs(win: Score, rest: list[Score]) -> list[str]:
    out: list[str] = []
    for row in win.rows:
        board = (row["scenario"], row["concurrency"])
        others = [r for s in rest for r in s.rows if (r["scenario"], r["concurrency"]) == board]
        p99 = (row.get("latency_us") or {}).get("p99")
        better_p99 = [
            r for r in others if p99 and (r.get("latency_us") or {}).get("p99", p99) < p99
        ]
        if better_p99:
            r = min(better_p99, key=lambda r: r["latency_us"]["p99"])
            out.append(
                f"on {board[0]}, {r['target']} has the lower p99 ({d.ms(r, 'p99')} ms against "
                f"{d.ms(row, 'p99')} ms) at {d.rps(r)} req/s."
            )
        rss = row.get("peak_rss_bytes")
        leaner = [
            r for r in others if rss and r.get("peak_rss_bytes") and r["peak_rss_bytes"] < rss * 0.8
        ]
        if leaner:
            r = min(leaner, key=lambda r: r["peak_rss_bytes"])
            out.append(
                f"on {board[0]}, {r['target']} uses less memory (peak RSS {d.rss_mib(r)} MiB "
                f"against {d.rss_mib(row)} MiB)."
            )
        cpu = row.get("cpu_s_per_1k")
        cheaper = [
            r for r in others if cpu and r.get("cpu_s_per_1k") and r["cpu_s_per_1k"] < cpu * 0.9
        ]
        if cheaper:
            r = min(cheaper, key=lambda r: r["cpu_s_per_1k"])
            out.append(
                f"on {board[0]}, {r['target']} spends less CPU per request "
                f"({d.cpu_ms_per_1k(r)} against {d.cpu_ms_per_1k(row)} CPU-ms/1k req)."
            )
    return out


def picks(run: Run) -> list[str]:
    """One line per workload profile the run measured: the pick, and the pairs whose lead
    over the next is inside the run's noise with it (what the terminal shows at a run's end)."""
    lines = []
    for profile in PROFILES:
        scores, _, boards = score(run, profile)
        if not boards or not scores:
            continue
        tied = [b.target for b in scores[1:] if _lead_is_noise(scores[0], b, run.noisy_threshold)]
        line = f"{profile.title}: {scores[0].target}"
        lines.append(line + (f" (tied with {', '.join(tied)})" if tied else ""))
    return lines


def section(run: Run, profile: Profile) -> list[str]:
    out = [f"## {profile.title}", "", f"*{profile.about}*", ""]
    scores, left_out, boards = score(run, profile)
    if not boards:
        wanted = ", ".join(profile.scenarios)
        return [*out, f"Not in this run: none of its scenarios ({wanted}) was measured.", ""]
    out.append(
        "Scenarios: "
        + ", ".join(f"`{s}` @ {c}" for s, c in boards)
        + ". Score: geometric mean of requests/s relative to the best"
        + (" WSGI" if profile.kinds else "")
        + " pair on each (1.00 = best everywhere)."
    )
    out.append("")
    if not scores:
        out += ["No pair has an `ok` row on every one of these scenarios: no recommendation."]
    else:
        win = scores[0]
        out.append(f"**Pick: {win.target}** (score {win.score:.2f}).")
        out.append("")
        for row in win.rows:
            out.append(f"- {_numbers(row)}")
        out.append("")
        if len(scores) > 1:
            second = scores[1]
            lead = f"{(win.score / second.score - 1) * 100:.0f}%" if second.score else "-"
            verdict = (
                f"Runner-up: **{second.target}** (score {second.score:.2f}; "
                f"{win.target} leads by {lead})."
            )
            if _lead_is_noise(win, second, run.noisy_threshold):
                verdict += (
                    " That lead is within this run's noise (the noisy threshold, the rows' "
                    "spread or their 95 % intervals): treat them as tied."
                )
            out += [verdict, ""]
            trade = _tradeoffs(win, scores[1:])
            if trade:
                out += ["Trade-offs:", ""] + [f"- {t}" for t in trade] + [""]
            out += ["| pair | score | " + " | ".join(f"{s} req/s" for s, _ in boards) + " |"]
            out += ["|---|---:|" + "---:|" * len(boards)]
            for sc in scores:
                out.append(
                    f"| {sc.target} | {sc.score:.2f} | "
                    + " | ".join(d.rps(r) + (" (noisy)" if r.get("noisy") else "") for r in sc.rows)
                    + " |"
                )
            out.append("")
        if profile.kinds and scores:
            best_any = [
                r
                for r in d.ranked(run.pairs())
                if r["rank"] == 1 and (r["scenario"], r["concurrency"]) in boards
            ]
            if any(t["target"] != scores[0].target for t in best_any):
                out += [f"{scores[0].target} against the fastest pair of any kind:", ""]
            for top in best_any:
                mine = next(
                    (
                        r
                        for r in scores[0].rows
                        if (r["scenario"], r["concurrency"])
                        == (top["scenario"], top["concurrency"])
                    ),
                    None,
                )
                if mine is not None and top["target"] != mine["target"]:
                    share = float(mine["rps"]["median"]) / float(top["rps"]["median"])
                    out.append(
                        f"- against the fastest pair overall on {top['scenario']} "
                        f"({top['target']}, {d.rps(top)} req/s): {share:.2f}x"
                    )
            out.append("")
    noisy = [r for s in scores for r in s.rows if r.get("noisy")]
    if noisy:
        out += [
            f"Caution: {len(noisy)} of the rows behind this section are noisy (spread above "
            f"{run.noisy_threshold:.0%}).",
            "",
        ]
    if left_out:
        out += [
            "Not comparable here (no `ok` row on every scenario): " + "; ".join(left_out) + ".",
            "",
        ]
    return out


def markdown(run: Run) -> str:
    out = [
        "# Which framework should I pick?",
        "",
        f"Generated from {d.run_line(run)}. Every number below comes from this run's "
        "`summary.json`; nothing is carried over from elsewhere.",
        "",
    ]
    if run.quick:
        out += [
            "> **This is a quick-mode run** (one short repeat per cell): spread is not "
            "assessed, and differences of a few tens of percent can be noise on a shared "
            "machine. Treat every pick below as a hint and confirm it with a full run.",
            "",
        ]
    elif run.method.get("repeats", 0) and int(run.method["repeats"]) < 3:
        out += ["> Fewer than 3 repeats: the spread is a weak guide to the noise.", ""]
    out += [
        "Throughput is per server worker on one pinned core; a pair that wins here may lose "
        "at a different concurrency or worker count. Read the tables in README.md for the "
        "whole picture.",
        "",
    ]
    for profile in PROFILES:
        out += section(run, profile)
    return "\n".join(out).rstrip() + "\n"

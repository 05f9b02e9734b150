"""The tables of ``docs/performance.md``, generated from committed results (never typed in).

``python -m bench.perfdoc RUN_DIR [--memory MEMORY_DIR]`` prints markdown: for ``/json``,
``/db`` and ``/fortunes``, every pair's requests/s with its ratio to the raw server floor
(``x server``) and to its framework's hello world (``x fw``), checked against issue 8's
goals (``/json`` keeps at least 0.90 of the hello world, ``/db`` at least 0.80 of the
hello world's ``/db``); then, with ``--memory``, the streaming-memory table of ``lab
memory``, with ``--instructions`` the instruction counts of ``lab instructions``, and with
``--between OTHER_RUN`` the ``x fw`` ratios of RUN and each other run side by side (how far
a ratio moves from one run to the next, which no single run's spread shows), and for RUN and
each ``--control`` run that measured ``json-work``, what each server charged the floors for
a fixed amount of the app's own work (:func:`work_control`).
RUN_DIR is a ``lab bench`` run (its ``summary.json``); the ratios are the ones
``bench.stats`` computed there, over the median of the run's repeats at one concurrency.
With ``--update docs/performance.md`` the output replaces the page's generated block instead
of going to stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import docblock, idle, instructions, memory
from .manifest import session_orders
from .method import PLAN_ORDER
from .reporting import per_round, rounds_text
from .results import wall_span

__all__ = ["BEGIN", "END", "GOALS", "between_runs", "floor_tables", "main", "work_control"]

BEGIN, END = "<!-- perfdoc:begin -->", "<!-- perfdoc:end -->"

# scenario -> the x fw floor ratio issue 8 asks for (None: reported, no goal)
GOALS: dict[str, float | None] = {"json": 0.90, "db": 0.80, "fortunes": None}
QUICK_GOAL_MIN = 10


def _ratio(row: dict[str, Any], role: str) -> float | None:
    ref = (row.get("floors") or {}).get(role)
    value = ref.get("rps_ratio") if ref else None
    return None if value is None else float(value)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cpu_ratio(row: dict[str, Any], by_key: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The framework floor's server CPU per request over the pair's: the same question as
    ``x fw`` asked of CPU time, which a busy neighbour disturbs far less than requests/s."""
    ref = (row.get("floors") or {}).get("framework")
    floor = by_key.get((ref["target"], row["scenario"])) if ref else None
    mine, theirs = row.get("cpu_s_per_1k"), floor.get("cpu_s_per_1k") if floor else None
    return "-" if not mine or not theirs else f"{theirs / mine:.2f}"


def _spread(row: dict[str, Any]) -> str:
    spread = (row.get("rps") or {}).get("spread")
    return "-" if spread is None else f"{spread:.0%}"


def floor_tables(run_dir: Path, concurrency: int = 64) -> str:
    summary = json.loads((run_dir / "summary.json").read_text())
    level = [r for r in summary["rows"] if r["concurrency"] == concurrency]
    by_key = {(str(r["target"]), str(r["scenario"])): r for r in level}
    rows = [r for r in level if r["role"] == "pair"]
    out = [
        f"Run `{summary['run_id']}`, {concurrency} connections; medians over its repeats. "
        "`x server`: over the raw ASGI/WSGI callable on the same server (json only: the raw "
        "floors serve no database routes); `x fw`: over the framework's hello world on the "
        "same server (json, and db against the hello world's minimal /db); `spread`: "
        "(max - min) / median of the pair's requests/s over the repeats; `CPU x fw`: the hello "
        "world's server CPU per request over the pair's (1.00: the stack costs nothing), "
        "steadier than requests/s on a busy machine; `x fw by round`: the median of the ratios "
        "taken round by round (the pair and its hello world run next to each other in each "
        "round), with the smallest and largest (runs from before 2026-12-05 have none). The "
        "goal is judged on the lower of `x fw` and `x fw by round`.",
        "",
    ]
    for scenario, goal in GOALS.items():
        chosen = sorted(
            (r for r in rows if r["scenario"] == scenario), key=lambda r: str(r["target"])
        )
        if not chosen:
            out += [f"### /{scenario}", "", "(not in this run)", ""]
            continue
        goal_text = f"goal x fw >= {goal:.2f}" if goal is not None else "no goal"
        out += [
            f"### /{scenario} ({goal_text})",
            "",
            "| pair | req/s | spread | x server | x fw | x fw by round | CPU x fw | goal |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in chosen:
            fw = _ratio(r, "framework")
            rounds = per_round(r, "framework")
            judged = fw if rounds is None or fw is None else min(fw, float(rounds["median"]))
            verdict = (
                "-"
                if goal is None or judged is None
                else ("met" if judged >= goal else "**not met**")
            )
            if r["outcome"] != "ok":
                verdict = r["outcome"]
            median = (r.get("rps") or {}).get("median")
            rps = "-" if median is None else f"{median:,.0f}"
            out.append(
                f"| {r['target']} | {rps} | {_spread(r)} | {_fmt(_ratio(r, 'server'))} "
                f"| {_fmt(fw)} | {rounds_text(rounds)} | {_cpu_ratio(r, by_key)} | {verdict} |"
            )
        out.append("")
    return "\n".join(out)


def _per_request_us(rps: float | None) -> float | None:
    return None if not rps else 1e6 / rps


def work_control(run_dir: Path, concurrency: int = 64) -> str | None:
    """The control: every floor's ``/json`` and ``/json-work`` (the same response after
    ``impls.floors.app_work``), as time per request and server CPU per request, and what the
    work cost on top, read against its cost in a warm loop (the manifest's
    ``controls.app_work``). None when the run measured no ``json-work``."""
    summary = json.loads((run_dir / "summary.json").read_text())
    level = [
        r
        for r in summary["rows"]
        if r["concurrency"] == concurrency and r["role"] == "floor" and r["outcome"] == "ok"
    ]
    by_key = {(str(r["target"]), str(r["scenario"])): r for r in level}
    targets = sorted(
        {t for t, sc in by_key if sc == "json-work" and (t, "json") in by_key},
        key=lambda t: (t.rpartition("-")[2], t),  # by server, then floor
    )
    if not targets:
        return None
    manifest = json.loads((run_dir / "manifest.json").read_text())
    work = (manifest.get("controls") or {}).get("app_work") or {}
    loop_us = work.get("us")
    pinning = manifest.get("pinning") or {}
    where = (
        f"the server on CPU {pinning.get('server_cpus')}, wrk on {pinning.get('client_cpus')}"
        if pinning.get("enabled")
        else "nothing pinned"
    ) + (", CPUs held awake" if idle.was_held(manifest) else ", idle CPUs left to halt")
    out = [
        f"Run `{summary['run_id']}`, {concurrency} connections, {where}; medians over its "
        f"repeats. `/json-work` is `/json` after {work.get('loops', '?')} turns of a "
        "pure-Python loop (`impls.floors.app_work`), "
        + (f"{loop_us:.2f} µs in a warm loop in the harness's process" if loop_us else "")
        + ". `µs/req`: one second over the requests/s (one server core, saturated); `extra`: "
        "what the work added to it, with the same difference taken round by round (median, "
        "smallest-largest); `CPU extra`: the same from the server's CPU time per request; "
        "`x loop`: `CPU extra` over the warm loop's cost, what the server charges per µs "
        "of the app's own Python.",
        "",
        "| floor | /json µs/req | /json-work µs/req | extra µs | extra by round | CPU extra µs "
        "| x loop |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for target in targets:
        plain, worked = by_key[(target, "json")], by_key[(target, "json-work")]
        base = _per_request_us((plain.get("rps") or {}).get("median"))
        slow = _per_request_us((worked.get("rps") or {}).get("median"))
        extra = None if base is None or slow is None else slow - base
        rounds_plain = (plain.get("rps") or {}).get("by_round") or {}
        rounds_work = (worked.get("rps") or {}).get("by_round") or {}
        by_round = sorted(
            1e6 / rounds_work[k] - 1e6 / rounds_plain[k]
            for k in rounds_work
            if rounds_plain.get(k) and rounds_work[k]
        )
        by_round_text = (
            f"{statistics.median(by_round):.1f} ({by_round[0]:.1f}-{by_round[-1]:.1f})"
            if len(by_round) > 1
            else "-"
        )
        cpu_plain, cpu_work = plain.get("cpu_s_per_1k"), worked.get("cpu_s_per_1k")
        cpu_extra = None if not cpu_plain or not cpu_work else (cpu_work - cpu_plain) * 1000
        charge = None if cpu_extra is None or not loop_us else cpu_extra / loop_us
        out.append(
            f"| {target} | {_fmt1(base)} | {_fmt1(slow)} | {_fmt1(extra)} | {by_round_text} "
            f"| {_fmt1(cpu_extra)} | {_fmt1(charge)} |"
        )
    return "\n".join(out) + "\n"


def _fmt1(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def between_runs(run_dirs: Sequence[Path], concurrency: int = 64) -> str:
    """``x fw`` of every pair in several floors runs, one column per run, for the scenarios
    with a goal: the spread inside one run says how its repeats agree, this says how far the
    same ratio moves between runs on the same machine."""
    runs: list[tuple[str, str, dict[tuple[str, str], float | None]]] = []
    for run_dir in run_dirs:
        summary = json.loads((run_dir / "summary.json").read_text())
        manifest = json.loads((run_dir / "manifest.json").read_text())
        commit = str((manifest.get("git") or {}).get("commit") or "?")[:7]
        cpu = (manifest.get("machine") or {}).get("cpu_model")
        chosen = [
            r
            for r in summary["rows"]
            if r["role"] == "pair" and r["concurrency"] == concurrency and r["outcome"] == "ok"
        ]
        # `lab report` re-summarises old runs with per-round ratios too: the plan's order is
        # what the manifest recorded (or the commit's history says), not what the rows hold
        neighbours = set(session_orders(manifest)) == {PLAN_ORDER}
        awake = "awake" if idle.was_held(manifest) else None
        label = "; ".join(
            x for x in (commit, cpu, "neighbours" if neighbours else None, awake) if x
        )
        ratios = {(str(r["scenario"]), str(r["target"])): _ratio(r, "framework") for r in chosen}
        runs.append((str(summary["run_id"]), label, ratios))
    runs.sort(key=lambda run: run[0])  # run ids start with their UTC start time
    order = list(GOALS)
    keys = sorted(
        {key for _, _, ratios in runs for key in ratios if GOALS.get(key[0]) is not None},
        key=lambda key: (order.index(key[0]), key[1]),
    )
    out = [
        f"`x fw` at {concurrency} connections in each floors run, one column per run, oldest "
        "first, each headed by its commit, its CPU and, for runs that play each pair next to "
        "its floors within a round, `neighbours` (older runs played every pair, then every "
        "floor), and `awake` for runs that held the CPUs out of deep idle (bench/idle.py; "
        "older runs let an idle client's wake-ups tax the server); `range`: the largest minus "
        "the smallest. A pair whose code changed between "
        "two runs' commits moved for that reason too (the CHANGELOG says which), and runs on "
        "different CPUs differ for that reason too; the others show how far the same ratio "
        "moves from one run to the next.",
        "",
        "| pair | scenario | "
        + " | ".join(f"`{rid}` ({commit})" for rid, commit, _ in runs)
        + " | range |",
        "|---|---|" + "---:|" * (len(runs) + 1),
    ]
    for scenario, target in keys:
        values = [ratios.get((scenario, target)) for _, _, ratios in runs]
        present = [v for v in values if v is not None]
        moved = max(present) - min(present) if len(present) > 1 else None
        cells = " | ".join(_fmt(v) for v in values)
        out.append(f"| {target} | {scenario} | {cells} | {_fmt(moved)} |")
    return "\n".join(out) + "\n"


def quick_wall_time(run_dir: Path) -> str:
    """Harness cost from a quick run's own record: its first cell's start to its last
    cell's end (what ``time nox -s bench`` measures, less the environment's install)."""
    cells = [json.loads(f.read_text()) for f in sorted((run_dir / "cells").glob("*.json"))]
    span = wall_span(cells)
    if span is None:
        return f"Quick run `{run_dir.name}`: no finished cells."
    minutes = span / 60
    verdict = "met" if minutes <= QUICK_GOAL_MIN else "**not met**"
    return (
        f"Quick matrix: run `{run_dir.name}`, {len(cells)} cells, {minutes:.1f} minutes from "
        f"the first cell's start to the last cell's end (goal <= {QUICK_GOAL_MIN} min: "
        f"{verdict}).\n"
    )


def _demote(markdown: str) -> str:
    """A standalone report's title as a section of the page (``#`` becomes ``###``)."""
    return markdown.replace("# ", "### ", 1) if markdown.startswith("# ") else markdown


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perfdoc", description=__doc__)
    parser.add_argument("run", help="a lab bench run folder (summary.json)")
    parser.add_argument("--memory", help="a lab memory folder (memory.json)")
    parser.add_argument(
        "--instructions",
        action="append",
        default=[],
        help="a lab instructions folder (instructions.json); repeat for a follow-up run, "
        "each rendered as its own table (ratios never mix runs)",
    )
    parser.add_argument(
        "--between",
        action="append",
        default=[],
        help="another floors run; repeat for more: x fw of RUN and each of these side by side",
    )
    parser.add_argument(
        "--control",
        action="append",
        default=[],
        help="a run with the floors' json-work control; repeat for more, each its own table "
        "(the main run's is shown first when it has one)",
    )
    parser.add_argument("--quick", help="a quick run (nox -s bench) for the harness-cost line")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--update", type=Path, help="rewrite the generated block of this page")
    args = parser.parse_args(argv)
    text = floor_tables(Path(args.run), args.concurrency)
    if args.between:
        runs = [Path(args.run), *map(Path, args.between)]
        text += "\n### Run to run\n\n" + between_runs(runs, args.concurrency)
    controls = [
        table
        for folder in [Path(args.run), *map(Path, args.control)]
        if (table := work_control(folder, args.concurrency)) is not None
    ]
    if controls:
        text += "\n### What a server charges for the app's own work\n\n" + "\n".join(controls)
    if args.memory:
        header, results = memory.load_results(Path(args.memory) / "memory.json")
        text += "\n" + _demote(memory.markdown(results, header, Path(args.memory).name))
    if args.quick:
        text += "\n### Harness cost\n\n" + quick_wall_time(Path(args.quick))
    for folder in args.instructions:
        doc, counted = instructions.load_results(Path(folder) / "instructions.json")
        text += "\n" + _demote(instructions.markdown(counted, doc, GOALS, Path(folder).name))
    if args.update:
        docblock.fill_file(args.update, BEGIN, END, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

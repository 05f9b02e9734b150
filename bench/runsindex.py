"""The index of committed runs, ``results/README.md``'s table, generated from each folder's
own records (manifest, summary, cells, or a one-off command's JSON), so that no figure in it
is typed by hand and no committed run is left out.

``python -m bench.runsindex [RESULTS_DIR] [--update README] [--check README]`` prints the
table, or writes it between the README's markers, or exits 1 when the README's table is not
what the folders say (the test suite checks this).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import docblock
from .manifest import server_settings
from .results import wall_span

__all__ = ["BEGIN", "END", "Entry", "describe", "index", "main"]

BEGIN, END = "<!-- runs:begin -->", "<!-- runs:end -->"
RESULTS_ROOT = Path(__file__).resolve().parent.parent / "results"

# What a folder's kind is read from, and which of its files are its readable outputs.
_ONE_OFF = {"memory.json": "memory", "instructions.json": "instructions"}
_OUTPUTS = ("README.md", "picker.md", "experiments.md", "report.html")


@dataclass(frozen=True, slots=True)
class Entry:
    folder: str
    kind: str  # quick, full, experiments (lab bench's modes), memory, instructions
    command: str
    what: str
    outcome: str
    where: str
    links: tuple[str, ...]


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _where(record: dict[str, Any]) -> str:
    machine = record.get("machine") or {}
    services = record.get("services") or {}
    git = record.get("git") or {}
    parts = [str(machine.get("cpu_model") or "?")]
    if services.get("postgresql"):
        parts.append(f"PostgreSQL {str(services['postgresql']).split()[0]}")
    if services.get("redis"):
        parts.append(f"Redis {services['redis']}")
    commit = str(git.get("commit") or "none")[:8] + (" (dirty)" if git.get("dirty") else "")
    return ", ".join(parts) + f"; commit {commit}"


def _bench(folder: Path) -> Entry:
    manifest = _read(folder / "manifest.json")
    method = manifest.get("method") or {}
    sessions = manifest.get("sessions") or [{}]
    cells = [_read(p) for p in sorted((folder / "cells").glob("*.json"))]
    targets = {c["target"]["id"] for c in cells}
    scenarios = sorted({c["scenario"]["id"] for c in cells})
    levels = sorted({int(c["concurrency"]) for c in cells})
    outcomes: dict[str, int] = {}
    for cell in cells:
        outcomes[cell["outcome"]] = outcomes.get(cell["outcome"], 0) + 1
    span = wall_span(cells)
    minutes = f"; {span / 60:.1f} min first cell to last" if span is not None else ""
    what = (
        f"{len(targets)} targets; {', '.join(scenarios)}; "
        f"{'/'.join(map(str, levels))} connections; "
        f"{method.get('repeats', '?')} x {method.get('duration_s', '?')} s"
    )
    outcome = ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) + minutes
    if len(sessions) > 1:
        outcome += f"; {len(sessions)} sessions"
    return Entry(
        folder=folder.name,
        kind=str(method.get("mode") or "?"),
        command=_command(manifest),
        what=what,
        outcome=outcome or "no cells",
        where=_where(manifest),
        links=tuple(name for name in _OUTPUTS if (folder / name).exists()),
    )


def _command(record: dict[str, Any]) -> str:
    """The command as run, with any server setting it had in its environment in front
    (``GRANIAN_TASK_IMPL=rust lab bench ...``): a setting that no argv shows still changed
    what was measured. Where the services were is the "where" column's business."""
    settings = server_settings(record.get("env") or {})
    return " ".join([*(f"{k}={v}" for k, v in settings.items()), *(record.get("command") or ["?"])])


def _one_off(folder: Path, name: str, kind: str) -> Entry:
    record = _read(folder / name)
    results = list(record.get("results") or [])
    method = record.get("method") or {}
    if kind == "memory":
        passed = sum(1 for r in results if r.get("passed"))
        what = f"{len({r['pair'] for r in results})} pairs; {method.get('small')} and "
        what += f"{method.get('large')} items streamed"
        outcome = f"{passed} of {len(results)} pass"
    else:
        what = f"{len({r['target'] for r in results})} targets; "
        what += f"{', '.join(sorted({r['scenario'] for r in results}))}; "
        what += f"{method.get('requests')} requests counted each"
        outcome = f"{len(results)} counts"
    return Entry(
        folder=folder.name,
        kind=kind,
        command=_command(record),
        what=what,
        outcome=outcome,
        where=_where(record),
        links=tuple(n for n in (f"{kind}.md",) if (folder / n).exists()),
    )


def describe(folder: Path) -> Entry | None:
    """One committed run folder, or None for anything else (this README, stray files)."""
    if (folder / "manifest.json").exists():
        return _bench(folder)
    for name, kind in _ONE_OFF.items():
        if (folder / name).exists():
            return _one_off(folder, name, kind)
    return None


def index(root: Path) -> str:
    """The markdown table: one row per run folder, oldest first (folders sort by date)."""
    entries = [e for d in sorted(root.iterdir()) if d.is_dir() and (e := describe(d))]
    lines = [
        "| run | kind | command | what | outcome | where | read |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        links = " · ".join(f"[{n}]({e.folder}/{n})" for n in e.links)
        lines.append(
            f"| [{e.folder}]({e.folder}/) | {e.kind} | `{e.command}` | {e.what} | "
            f"{e.outcome} | {e.where} | {links or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runsindex", description=__doc__)
    parser.add_argument("root", nargs="?", type=Path, default=RESULTS_ROOT)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--update", type=Path, metavar="README", help="rewrite its table")
    group.add_argument("--check", type=Path, metavar="README", help="exit 1 if it is stale")
    args = parser.parse_args(argv)
    table = index(args.root)
    if args.update:
        docblock.fill_file(args.update, BEGIN, END, table)
    elif args.check:
        text = args.check.read_text(encoding="utf-8")
        if docblock.fill(text, BEGIN, END, table) != text:
            print(
                f"{args.check} does not list the runs in {args.root}: run "
                f"`python -m bench.runsindex --update {args.check}`",
                file=sys.stderr,
            )
            return 1
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generated blocks inside hand-written docs.

A page keeps its prose and marks where a generator's output goes with a pair of HTML
comments (invisible on GitHub); ``fill`` replaces what lies between them and nothing else,
so the docs can be regenerated from a committed run without touching a word around them.
Used by ``lab techniques``, ``python -m bench.perfdoc --update`` and the reliability figures.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["fill", "fill_file"]


def fill(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with the lines between ``begin`` and ``end`` replaced by ``body``."""
    if begin not in text or end not in text or text.index(end) < text.index(begin):
        raise ValueError(f"no {begin} ... {end} block to fill")
    start, stop = text.index(begin), text.index(end) + len(end)
    if not body.endswith("\n"):
        body += "\n"
    return f"{text[:start]}{begin}\n{body}{end}{text[stop:]}"


def fill_file(path: Path, begin: str, end: str, body: str) -> None:
    try:
        text = fill(path.read_text(encoding="utf-8"), begin, end, body)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    path.write_text(text, encoding="utf-8")

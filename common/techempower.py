"""TechEmpower's rules for the /db, /queries, /updates and /fortunes tests (SPEC §3.1)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from html import escape
from operator import itemgetter
from typing import Any

from .items import Row

__all__ = [
    "ADDITIONAL_FORTUNE",
    "WORLD_ROWS",
    "queries_param",
    "random_ids",
    "random_number",
    "render_fortunes",
    "world_dict",
]

WORLD_ROWS = 10_000
QUERIES_MAX = 500
ADDITIONAL_FORTUNE = "Additional fortune added at request time."

_INT = re.compile(r"[ \t]*([+-]?)([0-9]+)[ \t]*")
_WORLD_IDS = range(1, WORLD_ROWS + 1)
_HEAD = (
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
)
_TAIL = "</table></body></html>"


def queries_param(raw: str | None) -> int:
    """``queries`` clamped to 1..500; missing or not an integer → 1 (never an error)."""
    if raw is None:
        return 1
    m = _INT.fullmatch(raw)
    if m is None:
        return 1
    if len(m[2]) > 6:  # huge, and int() of thousands of digits is a needless cost
        return 1 if m[1] == "-" else QUERIES_MAX
    n = int(m[1] + m[2])
    return 1 if n < 1 else min(n, QUERIES_MAX)


def random_ids(count: int) -> list[int]:
    """``count`` world ids in 1..10000 (repeats allowed, as TechEmpower permits)."""
    return random.choices(_WORLD_IDS, k=count)


def random_number() -> int:
    return random.randint(1, WORLD_ROWS)


def new_numbers(worlds: list[dict[str, Any]]) -> dict[int, int]:
    """Give each world a new ``randomNumber`` in place and return what to store, id → number.

    Random ids may repeat. One UPDATE of a repeated id keeps one of its numbers, so each
    id gets one number here, and every repetition in the answer shows it: the answer is what
    is stored, as if the worlds had been updated one by one and then read. The ids come
    sorted, so concurrent batches lock rows in one order and cannot deadlock each other."""
    chosen = {w["id"]: random_number() for w in worlds}
    for world in worlds:
        world["randomNumber"] = chosen[world["id"]]
    return dict(sorted(chosen.items()))


def world_dict(row: Row) -> dict[str, Any]:
    return {"id": row[0], "randomNumber": row[1]}


def render_fortunes(rows: Iterable[tuple[int, str]]) -> bytes:
    """The fortunes page: every row plus the request-time one, sorted by message, escaped."""
    fortunes = list(rows)
    fortunes.append((0, ADDITIONAL_FORTUNE))
    fortunes.sort(key=itemgetter(1))
    body = "".join(
        [
            f"<tr><td>{escape(str(id_))}</td><td>{escape(message)}</td></tr>"
            for id_, message in fortunes
        ]
    )
    return (_HEAD + body + _TAIL).encode()

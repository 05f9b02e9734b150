"""The item domain: categories, limits and row shaping shared by every implementation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

import msgspec

from .jsoncodec import ENCODERS
from .settings import switch_from_env

__all__ = [
    "CATEGORIES",
    "INT32_MAX",
    "INT32_MIN",
    "ITEM_COLUMNS",
    "ItemIn",
    "Row",
    "TaskIn",
    "dump",
    "item_dict",
]

CATEGORIES: tuple[str, ...] = (
    "books",
    "electronics",
    "garden",
    "grocery",
    "health",
    "music",
    "sports",
    "toys",
)
Category = Literal["books", "electronics", "garden", "grocery", "health", "music", "sports", "toys"]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
ITEM_COLUMNS: tuple[str, ...] = ("id", "name", "category", "price", "description", "created_at")

# Ranges from SPEC §3; adapters that validate with their own framework read these.
NAME_MAX = 100
# PostgreSQL `text` cannot hold U+0000: such a name is a 422, not a failed INSERT.
NAME_PATTERN = r"^[^\x00]*$"
PRICE_MAX = 1_000_000
PAGE_LIMIT_MAX, PAGE_LIMIT_DEFAULT = 100, 20
BATCH_MAX = 100
STREAM_COUNT_MAX, STREAM_COUNT_DEFAULT = 100_000, 100
EVENTS_COUNT_MAX, EVENTS_COUNT_DEFAULT = 1000, 10
EVENTS_INTERVAL_MAX, EVENTS_INTERVAL_DEFAULT = 10_000, 100
EVENTS_DURATION_MAX_MS = 60_000  # (count - 1) x interval_ms: one event stream's length
REPORT_ROWS_MAX, REPORT_ROWS_DEFAULT = 5000, 1000
FANOUT_MAX, FANOUT_DEFAULT = 50, 10
DELAY_MAX, DELAY_DEFAULT = 10_000, 20
CPU_MAX, CPU_DEFAULT = 10_000_000, 100_000
TASK_N_DEFAULT = 10_000
PRODUCTS_COUNT = 20


class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /items`` (SPEC §3.13)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
    category: Category
    price: Annotated[float, msgspec.Meta(ge=0, le=PRICE_MAX)]


class TaskIn(msgspec.Struct, forbid_unknown_fields=True):
    """The optional body of ``POST /tasks`` (SPEC §3.15)."""

    n: Annotated[int, msgspec.Meta(ge=1, le=CPU_MAX)] = TASK_N_DEFAULT
    delay_ms: Annotated[int, msgspec.Meta(ge=0, le=DELAY_MAX)] = 0


class Row(Protocol):
    """A fetched row: an asyncpg ``Record`` or a psycopg tuple; both index by position."""

    def __getitem__(self, index: int, /) -> Any: ...


def item_dict(row: Row) -> dict[str, Any]:
    """Shape a row selected with ``ITEM_COLUMNS`` (price already ``float8``) as the API's item."""
    return {
        "id": row[0],
        "name": row[1],
        "category": row[2],
        "price": row[3],
        "description": row[4],
        "created_at": row[5],
    }


# JSON as the lab serves it, datetimes in UTC ending in ``Z``: the one encoder of every body
# the domain writes, chosen once per process by LAB_JSON_CODEC (SPEC §6; orjson by default).
dump: Callable[[Any], bytes] = ENCODERS[switch_from_env("LAB_JSON_CODEC")]


def iso_z(value: datetime) -> str:
    """The same timestamp text ``dump`` produces, for non-JSON formats."""
    return dump(value)[1:-1].decode()

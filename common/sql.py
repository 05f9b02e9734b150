"""Every SQL statement the implementations run, shared by asyncpg and psycopg.

Placeholders are written ``$1`` (asyncpg's style); :func:`psycopg_style` rewrites them for
psycopg so the two drivers cannot drift apart.
"""

from __future__ import annotations

import re

_ITEM = "id, name, category, price::float8, description, created_at"

ITEM_BY_ID = f"SELECT {_ITEM} FROM items WHERE id = $1"
ITEMS_PAGE = f"SELECT {_ITEM} FROM items WHERE id > $1 ORDER BY id LIMIT $2"
ITEMS_PAGE_IN_CATEGORY = (
    f"SELECT {_ITEM} FROM items WHERE id > $1 AND category = $3 ORDER BY id LIMIT $2"
)
# LAB_PAGINATION=offset (SPEC §6): the same arguments ($1 = after, $2 = limit + 1, $3 =
# category) read as a row offset. PostgreSQL still reads and discards every skipped row,
# which is the cost the keyset-vs-offset experiment measures.
ITEMS_PAGE_OFFSET = f"SELECT {_ITEM} FROM items ORDER BY id LIMIT $2 OFFSET $1"
ITEMS_PAGE_OFFSET_IN_CATEGORY = (
    f"SELECT {_ITEM} FROM items WHERE category = $3 ORDER BY id LIMIT $2 OFFSET $1"
)
ITEMS_BATCH = f"SELECT {_ITEM} FROM items WHERE id = ANY($1::int[])"
ITEMS_FIRST = f"SELECT {_ITEM} FROM items WHERE id <= $1 ORDER BY id"
# GET /stream/items, one batch: the next $3 rows after id $1, up to id $2 (the count).
ITEMS_STREAM_BATCH = f"SELECT {_ITEM} FROM items WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3"


def page_statement(offset: bool, category: str | None) -> str:
    """The ``GET /items`` statement for the paging mode; its arguments are always
    ``(after, limit + 1[, category])``."""
    if offset:
        return ITEMS_PAGE_OFFSET if category is None else ITEMS_PAGE_OFFSET_IN_CATEGORY
    return ITEMS_PAGE if category is None else ITEMS_PAGE_IN_CATEGORY


ITEM_INSERT = (
    "INSERT INTO items (name, category, price, description, created_at) "
    f"VALUES ($1, $2, $3, '', now()) RETURNING {_ITEM}"
)
# POST /items with an Idempotency-Key (common/idempotency.py): the id is reserved first and
# recorded under the key; the insert names it, and a row already there is left as it is.
ITEM_ID_RESERVE = "SELECT nextval(pg_get_serial_sequence('items', 'id'))"
ITEM_INSERT_WITH_ID = (
    "INSERT INTO items (id, name, category, price, description, created_at) "
    f"VALUES ($1, $2, $3, $4, '', now()) ON CONFLICT (id) DO NOTHING RETURNING {_ITEM}"
)

WORLD_BY_ID = "SELECT id, randomnumber FROM world WHERE id = $1"
WORLD_UPDATE = (
    "UPDATE world AS w SET randomnumber = v.r FROM "
    "(SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v WHERE w.id = v.id"
)
FORTUNES = "SELECT id, message FROM fortune"

PING = "SELECT 1"

_DOLLAR = re.compile(r"\$(\d+)")


def psycopg_style(statement: str) -> str:
    """``$1`` → ``%s`` in order; the lab's statements use each placeholder once, ascending,
    except the paging statements (``$3 … $2``, ``$2 … $1``): callers of the sync twin pass
    parameters in the order :func:`placeholder_order` gives."""
    return _DOLLAR.sub("%s", statement.replace("%", "%%"))


def placeholder_order(statement: str) -> list[int]:
    """The 0-based argument indexes in the order their placeholders appear."""
    return [int(m) - 1 for m in _DOLLAR.findall(statement)]

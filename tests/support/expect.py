"""Assertions the conformance tests share: problem bodies, item shapes, database rows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from . import rules

__all__ = [
    "CATEGORIES",
    "ITEM_COLUMNS",
    "assert_item",
    "assert_media_type",
    "assert_problem",
    "db_item",
    "db_items",
    "item_from_db",
    "json_body",
    "parse_timestamp",
    "same_item",
]

CATEGORIES = ("books", "electronics", "garden", "grocery", "health", "music", "sports", "toys")
ITEM_COLUMNS = ("id", "name", "category", "price", "description", "created_at")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


def json_body(resp: httpx.Response | bytes) -> Any:
    data = resp if isinstance(resp, bytes) else resp.content
    return json.loads(data)


def assert_media_type(resp: httpx.Response, expected: str) -> None:
    got = rules.media_type(resp.headers.get("content-type"))
    assert got == expected, f"Content-Type {resp.headers.get('content-type')!r}, want {expected}"


def assert_problem(
    resp: httpx.Response,
    status: int,
    slug: str | None = None,
    loc: tuple[str | int, ...] | None = None,
    body: bytes | None = None,
) -> dict[str, Any]:
    """The response is the SPEC §2.1 problem for ``status`` (its shape was already checked by
    the client); with ``loc``, one of its errors' ``loc`` starts with it."""
    raw = resp.content if body is None else body
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.request.url}: status {resp.status_code}, want {status}; "
        f"body {raw[:400]!r}"
    )
    doc = json.loads(raw)
    slug = slug or rules.SLUGS[status]
    assert doc["type"] == f"urn:lab:problem:{slug}", doc
    if loc is not None:
        locs = [e.get("loc") for e in doc.get("errors", [])]
        assert any(list(found[: len(loc)]) == list(loc) for found in locs if found), (
            f"no error at loc {list(loc)}; errors: {doc.get('errors')}"
        )
    return doc


def parse_timestamp(text: str) -> datetime:
    assert _TIMESTAMP.fullmatch(text), f"created_at {text!r} is not YYYY-MM-DDTHH:MM:SS[.f]Z"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_item(item: Any) -> None:
    """SPEC §1: an item's JSON shape."""
    assert isinstance(item, dict), item
    assert tuple(sorted(item)) == tuple(sorted(ITEM_COLUMNS)), f"item keys {sorted(item)}"
    assert isinstance(item["id"], int) and not isinstance(item["id"], bool), item
    assert isinstance(item["name"], str), item
    assert item["category"] in CATEGORIES, item
    price = item["price"]
    assert isinstance(price, int | float) and not isinstance(price, bool), item
    assert round(price, 2) == price, f"price {price} has more than 2 decimals"
    assert isinstance(item["description"], str), item
    parse_timestamp(item["created_at"])


def item_from_db(row: tuple[Any, ...]) -> dict[str, Any]:
    item_id, name, category, price, description, created_at = row
    return {
        "id": item_id,
        "name": name,
        "category": category,
        "price": Decimal(price),
        "description": description,
        "created_at": created_at.astimezone(UTC),
    }


def db_item(db: Any, item_id: int) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT id, name, category, price, description, created_at FROM items WHERE id = %s",
        (item_id,),
    ).fetchone()
    return None if row is None else item_from_db(row)


def db_items(db: Any, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return [item_from_db(r) for r in db.execute(sql, params).fetchall()]


def same_item(api: dict[str, Any], row: dict[str, Any]) -> None:
    """The API's item equals the database row (price and timestamp compared as values)."""
    assert_item(api)
    assert api["id"] == row["id"]
    assert api["name"] == row["name"]
    assert api["category"] == row["category"]
    assert api["description"] == row["description"]
    assert Decimal(str(api["price"])) == row["price"], (api["price"], row["price"])
    assert parse_timestamp(api["created_at"]) == row["created_at"], (
        api["created_at"],
        row["created_at"],
    )

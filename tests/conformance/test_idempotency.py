"""SPEC §3.13's ``Idempotency-Key``: a retried ``POST /items`` stores its item once.

A request repeated with its key cannot tell the server whether the first one was answered,
so the second request below is the retry of a request whose answer was lost: it finds the
row the first one stored and answers with it. (The fault suite repeats one after a 503.)
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from common import idempotency
from tests.support.client import LabClient
from tests.support.expect import assert_item, assert_problem, db_item, json_body, same_item

pytestmark = pytest.mark.conformance


def _item(name: str, price: float = 12.5) -> dict[str, Any]:
    return {"name": name, "category": "toys", "price": price}


def _rows_named(db: Any, name: str) -> int:
    row = db.execute("SELECT count(*) FROM items WHERE name = %s", (name,)).fetchone()
    return int(row[0])


@pytest.fixture
def name() -> str:
    return f"idempotent {uuid.uuid4().hex[:12]}"


def _post(client: LabClient, body: bytes, key: str | bytes, **kwargs: Any) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    return client.post("/items", content=body, headers=headers, **kwargs)


def test_a_repeated_key_gets_the_first_answer_and_stores_nothing_more(
    client: LabClient, db: Any, name: str
) -> None:
    """The same key and the same item, written differently (member order, spacing, 12.5 as
    12.50): the same 201, ``Location`` and body, marked ``Idempotent-Replayed``; one row."""
    key = f"order-{uuid.uuid4()}"
    first = _post(client, json.dumps(_item(name)).encode(), key)
    assert first.status_code == 201, first.text[:300]
    assert idempotency.REPLAYED_HEADER.lower() not in first.headers
    item = json_body(first)
    assert_item(item)
    rewritten = b'{ "price": 12.50, "category": "toys", "name": %s }' % json.dumps(name).encode()
    again = _post(client, rewritten, key)
    assert again.status_code == 201, again.text[:300]
    assert again.headers.get(idempotency.REPLAYED_HEADER) == "true"
    assert again.headers["location"] == first.headers["location"]
    assert json_body(again) == item
    assert _rows_named(db, name) == 1
    same_item(item, db_item(db, item["id"]))


def test_a_key_used_with_another_item_is_a_422(client: LabClient, db: Any, name: str) -> None:
    key = f"order-{uuid.uuid4()}"
    assert _post(client, json.dumps(_item(name)).encode(), key).status_code == 201
    other = _post(client, json.dumps(_item(name, price=13)).encode(), key, allow={422})
    assert_problem(other, 422, "idempotency-key-reused")
    assert _rows_named(db, name) == 1


def test_requests_sharing_a_key_at_once_store_one_row(
    client: LabClient, db: Any, name: str
) -> None:
    """Eight at the same moment: every one gets the same 201, and there is one row."""
    key = f"order-{uuid.uuid4()}"
    body = json.dumps(_item(name)).encode()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: _post(client, body, key), range(8)))
    assert [a.status_code for a in answers] == [201] * 8, [a.text[:200] for a in answers]
    assert len({a.headers["location"] for a in answers}) == 1
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get(idempotency.REPLAYED_HEADER) != "true" for a in answers) >= 1
    assert _rows_named(db, name) == 1


def test_without_a_key_each_request_stores_a_row(client: LabClient, db: Any, name: str) -> None:
    body = json.dumps(_item(name)).encode()
    for _ in range(2):
        resp = client.post("/items", content=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 201
    assert _rows_named(db, name) == 2


@pytest.mark.per_framework
@pytest.mark.parametrize(
    "key",
    ["", "k" * (idempotency.KEY_MAX + 1), b"cl\xc3\xa9", "two words"],
    ids=["empty", "too-long", "not-ascii", "space"],
)
def test_a_malformed_key_is_a_422(client: LabClient, db: Any, name: str, key: str | bytes) -> None:
    resp = _post(client, json.dumps(_item(name)).encode(), key, allow={422})
    assert_problem(resp, 422, "validation", loc=("header", "idempotency-key"))
    assert _rows_named(db, name) == 0

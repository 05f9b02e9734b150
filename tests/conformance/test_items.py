"""SPEC §3.3 (item by id), §3.4 (keyset pages), §3.5 (batch) and §3.13 (POST /items)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest

from tests.conformance import cases
from tests.support.client import LabClient
from tests.support.expect import (
    assert_item,
    assert_media_type,
    assert_problem,
    db_item,
    json_body,
    parse_timestamp,
    same_item,
)

pytestmark = pytest.mark.conformance

MAX_BODY = 65_536


# --- §3.3 -------------------------------------------------------------------------------------


@pytest.mark.per_framework
@pytest.mark.parametrize("item_id", [1, 2, 777, 54_321, 100_000])
def test_item_by_id_is_the_row(client: LabClient, db, item_id: int) -> None:
    """SPEC §3.3, §1: one item by primary key, equal to its database row."""
    resp = client.get(f"/items/{item_id}")
    assert resp.status_code == 200
    assert_media_type(resp, "application/json")
    same_item(json_body(resp), db_item(db, item_id))


# --- §3.4 -------------------------------------------------------------------------------------


def _page(client: LabClient, url: str) -> tuple[list[dict], str | None]:
    resp = client.get(url)
    assert resp.status_code == 200, resp.text[:300]
    assert_media_type(resp, "application/json")
    body = json_body(resp)
    assert set(body) == {"items", "next"}, body.keys()
    for item in body["items"]:
        assert_item(item)
    return body["items"], body["next"]


def test_first_page_defaults(client: LabClient) -> None:
    """SPEC §3.4: limit 20 and after 0 by default; ``next`` is the relative URL of page 2."""
    items, nxt = _page(client, "/items")
    assert [i["id"] for i in items] == list(range(1, 21))
    assert nxt == "/items?limit=20&after=20"


@pytest.mark.per_framework
@pytest.mark.parametrize("limit", [1, 7, 100])
def test_page_after(client: LabClient, db, limit: int) -> None:
    """SPEC §3.4: items with ``id > after`` ordered by id, ``limit`` of them (1..100)."""
    items, nxt = _page(client, f"/items?limit={limit}&after=500")
    assert [i["id"] for i in items] == list(range(501, 501 + limit))
    assert nxt == f"/items?limit={limit}&after={500 + limit}"
    same_item(items[0], db_item(db, 501))


@pytest.mark.per_framework
def test_category_pages_followed_to_the_end(client: LabClient, db) -> None:
    """SPEC §3.4: following ``next`` (with ``&category=``) visits every item of the category
    after the start exactly once, in id order, and ends with ``next: null``."""
    start = 99_000
    want = [
        r[0]
        for r in db.execute(
            "SELECT id FROM items WHERE id > %s AND category = 'books' ORDER BY id", (start,)
        )
    ]
    url: str | None = f"/items?limit=40&after={start}&category=books"
    seen: list[int] = []
    for _ in range(len(want) // 40 + 3):
        if url is None:
            break
        assert url.startswith("/items?"), url
        items, nxt = _page(client, url)
        assert all(i["category"] == "books" for i in items)
        seen += [i["id"] for i in items]
        if nxt is not None:
            assert nxt == f"/items?limit=40&after={items[-1]['id']}&category=books"
        url = nxt
    assert url is None, "next never became null"
    assert seen == want


@pytest.mark.per_framework
def test_next_is_null_exactly_at_the_end(client: LabClient, db) -> None:
    """SPEC §3.4: ``next`` is null when no item follows, even when the page is full (the lab
    fetches limit + 1 rows to know)."""
    last = [
        r[0]
        for r in db.execute(
            "SELECT id FROM items WHERE category = 'garden' ORDER BY id DESC LIMIT 4"
        )
    ]
    after = last[3]
    items, nxt = _page(client, f"/items?limit=3&after={after}&category=garden")
    assert [i["id"] for i in items] == sorted(last[:3])
    assert nxt is None
    items, nxt = _page(client, f"/items?limit=2&after={after}&category=garden")
    assert nxt == f"/items?limit=2&after={items[-1]['id']}&category=garden"
    items, nxt = _page(client, nxt)
    assert [i["id"] for i in items] == [last[0]]
    assert nxt is None


@pytest.mark.per_framework
def test_page_past_the_end_is_empty(client: LabClient) -> None:
    """SPEC §3.4: an ``after`` beyond every id gives an empty page and ``next: null``."""
    items, nxt = _page(client, "/items?after=2147483647")
    assert items == [] and nxt is None


# --- §3.5 -------------------------------------------------------------------------------------


@pytest.mark.per_framework
@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ("1,5,9", [1, 5, 9]),
        ("9,1,5", [9, 1, 5]),
        ("42", [42]),
        ("1,99999999,5", [1, 5]),
        ("-1,0,3", [3]),
        ("5,1,5,9,1", [5, 1, 9]),
        ("99999999", []),
        (",".join(str(i) for i in range(100, 0, -1)), list(range(100, 0, -1))),
    ],
    ids=[
        "ordered",
        "reordered",
        "one",
        "missing",
        "nonpositive",
        "duplicates",
        "none-found",
        "hundred",
    ],
)
def test_batch_order_missing_and_duplicates(
    client: LabClient, db, ids: str, expected: list[int]
) -> None:
    """SPEC §3.5: items in the order asked, missing ids left out, a repeated id once at its
    first position; up to 100 ids."""
    resp = client.get(f"/items/batch?ids={ids}")
    assert resp.status_code == 200, resp.text[:300]
    assert_media_type(resp, "application/json")
    body = json_body(resp)
    assert set(body) == {"items"}
    assert [i["id"] for i in body["items"]] == expected
    for item in body["items"][:3]:
        same_item(item, db_item(db, item["id"]))


# --- §3.13 ------------------------------------------------------------------------------------


def _post(
    client: LabClient, body: bytes, content_type: str | None = "application/json", **kwargs
) -> object:
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post("/items", content=body, headers=headers, **kwargs)


@pytest.fixture
def unique_name() -> str:
    return f"conformance {uuid.uuid4().hex[:8]} Caffè & <b>“日本”</b> 'q'"


def test_create_item(client: LabClient, db, unique_name: str) -> None:
    """SPEC §3.13: 201, ``Location: /items/<id>``, the stored item (price rounded to 2
    decimals, description ""); a GET of Location returns the same item; ids above 100000."""
    resp = _post(
        client, json.dumps({"name": unique_name, "category": "toys", "price": 12.344}).encode()
    )
    assert resp.status_code == 201, resp.text[:300]
    assert_media_type(resp, "application/json")
    item = json_body(resp)
    assert_item(item)
    assert item["id"] > 100_000
    assert resp.headers["location"] == f"/items/{item['id']}"
    assert (item["name"], item["category"], item["price"], item["description"]) == (
        unique_name,
        "toys",
        12.34,
        "",
    )
    parse_timestamp(item["created_at"])
    again = client.get(resp.headers["location"])
    assert again.status_code == 200
    assert json_body(again) == item
    same_item(item, db_item(db, item["id"]))


@pytest.mark.per_framework
@pytest.mark.parametrize(
    ("price", "stored"),
    [(0, 0), (7, 7), (19.999, 20), (0.004, 0), (1_000_000, 1_000_000), (999_999.99, 999_999.99)],
)
def test_create_item_price_bounds_and_rounding(
    client: LabClient, price: float, stored: float
) -> None:
    """SPEC §3.13: price 0..1000000 inclusive, any JSON number, stored as numeric(10,2)."""
    resp = _post(client, json.dumps({"name": "p", "category": "books", "price": price}).encode())
    assert resp.status_code == 201, resp.text[:300]
    assert json_body(resp)["price"] == stored


@pytest.mark.per_framework
@pytest.mark.parametrize("name", ["x", "x" * 100, "日" * 100])
def test_create_item_name_bounds(client: LabClient, name: str) -> None:
    """SPEC §3.13: name 1..100 characters (characters, not bytes)."""
    resp = _post(client, json.dumps({"name": name, "category": "music", "price": 1}).encode())
    assert resp.status_code == 201, resp.text[:300]
    assert json_body(resp)["name"] == name


@pytest.mark.per_framework
def test_create_item_content_type_parameters_allowed(client: LabClient) -> None:
    """SPEC §2.1: ``application/json`` with parameters is JSON."""
    resp = _post(
        client,
        b'{"name": "cs", "category": "garden", "price": 2}',
        "application/json; charset=utf-8",
    )
    assert resp.status_code == 201, resp.text[:300]


def test_body_of_exactly_64_kib_is_accepted(client: LabClient) -> None:
    """SPEC §2.1: the limit is *over* 65,536 bytes: a valid body of exactly 65,536 bytes
    (padded with JSON whitespace) is created; one byte more is 413."""
    body = b'{"name": "big", "category": "toys", "price": 3}'
    exact = body[:-1] + b" " * (MAX_BODY - len(body)) + b"}"
    assert len(exact) == MAX_BODY
    resp = _post(client, exact)
    assert resp.status_code == 201, resp.text[:300]
    over = body[:-1] + b" " * (MAX_BODY + 1 - len(body)) + b"}"
    assert_problem(_post(client, over), 413, "payload-too-large")


def test_chunked_body_over_64_kib_is_413(client: LabClient) -> None:
    """SPEC §2.1: the limit holds while the body is read, also without Content-Length."""

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(9):
            yield b"x" * 8192
        yield b'", "category": "toys", "price": 1}'

    resp = client.post("/items", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in resp.request.headers
    assert_problem(resp, 413, "payload-too-large")


def test_wrong_method_comes_before_body_size(client: LabClient) -> None:
    """SPEC §2.1: order 405 → 413: a too-large body on a wrong method is 405."""
    resp = client.request(
        "PUT", "/items", content=b"x" * 70_000, headers={"Content-Type": "application/json"}
    )
    assert_problem(resp, 405, "method-not-allowed")


@pytest.mark.parametrize("case", cases.oversize(cases.ITEM_BODIES), ids=lambda c: c.id)
def test_oversize_item_bodies_are_413(client: LabClient, case: cases.BodyCase) -> None:
    """SPEC §2.1: the body limit comes before everything that looks at the body, on every
    server (each reads the body its own way)."""
    _assert_rejected(client, case)


@pytest.mark.per_framework
@pytest.mark.parametrize("case", cases.within_limit(cases.ITEM_BODIES), ids=lambda c: c.id)
def test_create_item_rejections(client: LabClient, case: cases.BodyCase) -> None:
    """SPEC §3.13 with §2.1's order 415 → 400 → 422: each bad body's status, problem type and
    ``loc``."""
    _assert_rejected(client, case)


def _assert_rejected(client: LabClient, case: cases.BodyCase) -> None:
    resp = _post(client, case.body, case.content_type)
    doc = assert_problem(resp, case.status, case.slug, case.loc)
    assert not re.search(r"File \"|line \d+, in ", json.dumps(doc)), "stack trace in problem"

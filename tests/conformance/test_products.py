"""SPEC §3.11: ``GET /products``, the first 20 items in the format ``Accept`` negotiates."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from typing import Any

import msgpack
import pytest
import yaml

from tests.conformance import cases
from tests.support import rules
from tests.support.client import LabClient
from tests.support.expect import ITEM_COLUMNS, assert_item, assert_media_type, assert_problem

pytestmark = pytest.mark.conformance

IDENTITY = {"Accept-Encoding": "identity"}


def _rows(media: str, body: bytes) -> list[dict[str, Any]]:
    """The products as dicts of the fields every format can carry faithfully."""
    if media == "application/json":
        rows = json.loads(body)
    elif media == "application/yaml":
        rows = yaml.safe_load(body.decode("utf-8"))
    elif media == "application/msgpack":
        rows = msgpack.unpackb(body, raw=False)
    elif media == "text/csv":
        table = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
        assert table[0] == list(ITEM_COLUMNS), table[0]
        rows = [dict(zip(table[0], r, strict=True)) for r in table[1:]]
    else:
        assert media == "application/xml"
        root = ET.fromstring(body)  # well-formed, or this raises
        assert root.tag == "products", root.tag
        rows = []
        for product in root:
            assert product.tag == "product", product.tag
            fields = {child.tag: child.text or "" for child in product}
            assert set(fields) == set(ITEM_COLUMNS), sorted(fields)
            rows.append(fields)
    assert isinstance(rows, list), type(rows)
    return [
        {
            "id": int(r["id"]),
            "name": r["name"],
            "category": r["category"],
            "price": float(r["price"]),
            "description": r["description"],
        }
        for r in rows
    ]


@pytest.fixture
def reference(client: LabClient) -> list[dict[str, Any]]:
    resp = client.get("/products", headers={"Accept": "application/json", **IDENTITY})
    items = json.loads(resp.content)
    assert isinstance(items, list) and len(items) == 20
    for item in items:
        assert_item(item)
    assert [i["id"] for i in items] == list(range(1, 21))
    return _rows("application/json", resp.content)


@pytest.mark.per_framework
@pytest.mark.parametrize(
    ("accept", "media"),
    cases.PRODUCTS_ACCEPT,
    ids=[a if a is not None else "absent" for a, _ in cases.PRODUCTS_ACCEPT],
)
def test_products_negotiation(
    client: LabClient, reference: list[dict[str, Any]], accept: str | None, media: str | None
) -> None:
    """SPEC §3.11: q-values, wildcards, the most specific range decides a type's q, ties in
    the order json, xml, yaml, csv, msgpack; absent → JSON; nothing acceptable → 406; each
    format parses (XML with a real parser, YAML safely, msgpack) to the same 20 items;
    ``Vary: Accept, Accept-Encoding``."""
    headers = IDENTITY | ({"Accept": accept} if accept is not None else {})
    raw = client.raw(
        "GET", "/products", headers=headers, omit=() if accept is not None else ("accept",)
    )
    if media is None:
        assert_problem(raw.response, 406, "not-acceptable", body=raw.body)
        return
    assert raw.status_code == 200, raw.body[:300]
    assert_media_type(raw.response, media)
    vary = rules.header_tokens(raw.headers.get_list("vary"))
    assert {"accept", "accept-encoding"} <= vary, sorted(vary)
    assert _rows(media, raw.body) == reference

"""Product and stream formats (SPEC §3.8, §3.9, §3.11)."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from common.formats import (
    PRODUCT_TYPES,
    STREAM_TYPES,
    content_type_header,
    csv_value,
    render_products,
    sse_event,
    stream_format,
)
from common.items import ITEM_COLUMNS, item_dict

WHEN = datetime(2024, 3, 5, 7, 8, 9, 123456, tzinfo=UTC)
NASTY = '<b>Tom & "Jerry\'s"</b> > all'


def _item(
    i: int, name: str = "widget", description: str = "plain", price: float = 9.99
) -> dict[str, Any]:
    return item_dict((i, name, "books", price, description, WHEN))


ITEMS = [
    _item(1),
    _item(2, name=NASTY, description='comma, "quote" and\nnewline\r\nand CRLF', price=10.0),
    _item(3, name="フレームワーク — ünïcödé", description="", price=0.5),
    _item(4, name="  leading and trailing  ", description="tab\there", price=1000000.0),
]


def _expected(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "created_at": "2024-03-05T07:08:09.123456Z"}


def test_json() -> None:
    body = render_products(ITEMS, "application/json")
    assert json.loads(body) == [_expected(i) for i in ITEMS]


def test_xml_is_well_formed_and_escaped() -> None:
    body = render_products(ITEMS, "application/xml")
    root = ET.fromstring(body)
    assert root.tag == "products"
    products = root.findall("product")
    assert len(products) == len(ITEMS)
    for element, item in zip(products, ITEMS, strict=True):
        assert [child.tag for child in element] == list(ITEM_COLUMNS)
        assert element.findtext("id") == str(item["id"])
        assert element.findtext("name") == item["name"]
        assert element.findtext("description") == item["description"]
        assert element.findtext("created_at") == "2024-03-05T07:08:09.123456Z"
    assert products[1].findtext("price") == "10.0"
    text = body.decode()
    assert "&lt;b&gt;Tom &amp; &quot;Jerry&apos;s&quot;&lt;/b&gt; &gt; all" in text
    assert NASTY not in text
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')


def test_xml_replaces_characters_xml_cannot_carry() -> None:
    body = render_products([_item(1, name="bell\x07 nul\x00 ok")], "application/xml")
    assert ET.fromstring(body).findtext("product/name") == "bell\ufffd nul\ufffd ok"


@given(st.text(st.characters(codec="utf-8"), max_size=50))
def test_xml_round_trips_any_text(name: str) -> None:
    body = render_products([_item(1, name=name)], "application/xml")
    got = ET.fromstring(body).findtext("product/name")
    allowed = "".join(
        "\ufffd" if (ord(c) < 0x20 and c not in "\t\n\r") or c in "\ufffe\uffff" else c
        for c in name
    )
    assert got == allowed


def test_yaml() -> None:
    body = render_products(ITEMS, "application/yaml")
    loaded = yaml.safe_load(body)
    assert loaded == [_expected(i) for i in ITEMS]
    assert isinstance(loaded[0]["created_at"], str)  # quoted: still the ISO text, not a date
    assert "フレームワーク".encode() in body  # UTF-8, not \u escapes


def _csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


def test_csv() -> None:
    body = render_products(ITEMS, "text/csv")
    rows = _csv_rows(body)
    assert rows[0] == ["id", "name", "category", "price", "description", "created_at"]
    assert body.startswith(b"id,name,category,price,description,created_at\r\n")
    assert body.endswith(b"\r\n")
    assert len(rows) == 1 + len(ITEMS)
    for row, item in zip(rows[1:], ITEMS, strict=True):
        assert row == [
            str(item["id"]),
            item["name"],
            "books",
            repr(item["price"]),
            item["description"],
            "2024-03-05T07:08:09.123456Z",
        ]
    # RFC 4180: fields with quotes, commas or line breaks are quoted, quotes doubled
    assert b'"comma, ""quote"" and\nnewline\r\nand CRLF"' in body
    assert b"1,widget,books,9.99,plain," in body


@given(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40))
def test_csv_round_trips_any_text(text: str) -> None:
    rows = _csv_rows(render_products([_item(7, name=text, description=text)], "text/csv"))
    assert rows[1][1] == text
    assert rows[1][4] == text


def test_msgpack() -> None:
    body = render_products(ITEMS, "application/msgpack")
    assert msgpack.unpackb(body) == [_expected(i) for i in ITEMS]


@pytest.mark.parametrize("media_type", PRODUCT_TYPES)
def test_every_product_type_renders_an_empty_list(media_type: str) -> None:
    assert isinstance(render_products([], media_type), bytes)


def test_unknown_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="text/html"):
        render_products(ITEMS, "text/html")
    with pytest.raises(ValueError, match="text/html"):
        stream_format("text/html")


@pytest.mark.parametrize(
    ("media_type", "header"),
    [
        ("application/json", "application/json"),
        ("application/xml", "application/xml; charset=utf-8"),
        ("application/yaml", "application/yaml"),
        ("text/csv", "text/csv; charset=utf-8"),
        ("application/msgpack", "application/msgpack"),
        ("application/x-ndjson", "application/x-ndjson"),
    ],
)
def test_content_type_header(media_type: str, header: str) -> None:
    assert content_type_header(media_type) == header


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (9.99, "9.99"),
        (10.0, "10.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (12, "12"),
        ("a,b", "a,b"),
        (WHEN, "2024-03-05T07:08:09.123456Z"),
        (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00Z"),
        (None, ""),
    ],
)
def test_csv_value(value: object, text: str) -> None:
    assert csv_value(value) == text


def _stream(media_type: str, batches: list[list[dict[str, Any]]]) -> bytes:
    fmt = stream_format(media_type)
    assert fmt.media_type == media_type
    return fmt.head() + b"".join(fmt.batch(b) for b in batches) + fmt.tail()


BATCH_SHAPES = {
    "none": [],
    "one empty batch": [[]],
    "one item": [ITEMS[:1]],
    "one batch": [ITEMS],
    "many batches": [ITEMS[:1], ITEMS[1:3], ITEMS[3:]],
    "empty batches between": [[], ITEMS[:2], [], [], ITEMS[2:], []],
    "tuple batch": [tuple(ITEMS)],
}


@pytest.mark.parametrize("batches", BATCH_SHAPES.values(), ids=BATCH_SHAPES.keys())
def test_json_array_stream_is_one_valid_array(batches: list[list[dict[str, Any]]]) -> None:
    expected = [_expected(i) for b in batches for i in b]
    assert json.loads(_stream("application/json", batches)) == expected


@pytest.mark.parametrize("batches", BATCH_SHAPES.values(), ids=BATCH_SHAPES.keys())
def test_ndjson_stream(batches: list[list[dict[str, Any]]]) -> None:
    body = _stream("application/x-ndjson", batches)
    expected = [_expected(i) for b in batches for i in b]
    assert [json.loads(line) for line in body.splitlines()] == expected
    assert body == b"" or body.endswith(b"\n")
    assert body.count(b"\n") == len(expected)  # newlines inside strings are escaped


@pytest.mark.parametrize("batches", BATCH_SHAPES.values(), ids=BATCH_SHAPES.keys())
def test_csv_stream(batches: list[list[dict[str, Any]]]) -> None:
    body = _stream("text/csv", batches)
    n = sum(len(b) for b in batches)
    assert body == render_products([i for b in batches for i in b], "text/csv")
    assert len(_csv_rows(body)) == 1 + n


def test_json_array_streams_are_independent() -> None:
    a, b = stream_format("application/json"), stream_format("application/json")
    out_a = a.head() + a.batch(ITEMS[:1])
    out_b = b.head() + b.batch(ITEMS[1:2])
    out_a += a.batch(ITEMS[2:3]) + a.tail()
    out_b += b.tail()
    assert [i["id"] for i in json.loads(out_a)] == [1, 3]
    assert [i["id"] for i in json.loads(out_b)] == [2]


def test_stream_types_all_have_a_format() -> None:
    for media_type in STREAM_TYPES:
        assert stream_format(media_type).media_type == media_type


def test_sse_event() -> None:
    assert sse_event(1, 10) == b'id: 1\ndata: {"seq": 1, "count": 10}\n\n'
    event = sse_event(42, 1000)
    data = event.split(b"\n")[1].removeprefix(b"data: ")
    assert json.loads(data) == {"seq": 42, "count": 1000}

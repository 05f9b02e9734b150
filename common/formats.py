"""Serialisations of items beyond JSON: the bodies of ``/products`` (SPEC §3.11), the
streamed formats of ``/stream/items`` (§3.8) and the events of ``/stream/events`` (§3.9).

Items arrive as shaped by ``common.items.item_dict`` (``created_at`` a datetime, ``price``
a float). Every non-JSON format writes ``created_at`` as the same ISO-8601 ``Z`` text the
JSON body carries, so a client sees one timestamp whichever format it asked for.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgpack
import yaml

from .items import ITEM_COLUMNS, dump, iso_z

__all__ = [
    "PRODUCT_TYPES",
    "STREAM_TYPES",
    "StreamFormat",
    "content_type_header",
    "csv_value",
    "render_products",
    "sse_event",
    "stream_format",
]

PRODUCT_TYPES: tuple[str, ...] = (
    "application/json",
    "application/xml",
    "application/yaml",
    "text/csv",
    "application/msgpack",
)
STREAM_TYPES: tuple[str, ...] = ("application/x-ndjson", "application/json", "text/csv")

# text/csv (RFC 4180) and application/xml (RFC 7303) define a charset parameter. JSON,
# YAML (RFC 9512) and msgpack are registered without one, so they go out bare.
_CONTENT_TYPES = {
    "text/csv": "text/csv; charset=utf-8",
    "application/xml": "application/xml; charset=utf-8",
}

_CSV_HEADER = (",".join(ITEM_COLUMNS) + "\r\n").encode()
# Characters XML text must not hold raw: markup, quotes, "\r" (a parser's end-of-line
# handling would turn it into "\n"), and those XML 1.0 forbids even as references
# (replaced so the document stays well-formed). One pass, and none for clean values.
_XML_SPECIAL = re.compile("[&<>\"'\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\r": "&#13;"}
# The libyaml binding is ~5x faster than the pure-Python dumper, with the same output rules.
_YamlDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def content_type_header(media_type: str) -> str:
    """The ``Content-Type`` value for a negotiated media type."""
    return _CONTENT_TYPES.get(media_type, media_type)


def csv_value(value: Any) -> str:
    """One field as text: floats as JSON writes them, datetimes as ISO-8601 ``Z``."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return iso_z(value)
    if value is None:
        return ""
    return str(value)


def _xml_escape(m: re.Match[str]) -> str:
    return _XML_ESCAPES.get(m[0], "\ufffd")


def _xml_text(value: Any) -> str:
    text = csv_value(value)
    return _XML_SPECIAL.sub(_xml_escape, text) if _XML_SPECIAL.search(text) else text


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """The item with ``created_at`` as text, for formats without a timestamp type of ours."""
    created = item.get("created_at")
    if isinstance(created, datetime):
        return {**item, "created_at": iso_z(created)}
    return item


def _render_xml(items: list[dict[str, Any]]) -> bytes:
    # One template per item: the columns are fixed, so no per-field loop or tag formatting.
    x = _xml_text
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<products>']
    parts.extend(
        f"<product><id>{x(i['id'])}</id><name>{x(i['name'])}</name>"
        f"<category>{x(i['category'])}</category><price>{x(i['price'])}</price>"
        f"<description>{x(i['description'])}</description>"
        f"<created_at>{x(i['created_at'])}</created_at></product>"
        for i in items
    )
    parts.append("</products>\n")
    return "".join(parts).encode()


def _csv_row(item: dict[str, Any]) -> tuple[Any, ...]:
    # The csv module already writes floats with repr() and None as "", as csv_value does;
    # only the timestamp needs converting.
    created = item["created_at"]
    return (
        item["id"],
        item["name"],
        item["category"],
        item["price"],
        item["description"],
        iso_z(created) if isinstance(created, datetime) else created,
    )


def _csv_rows(items: Sequence[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180: CRLF, minimal quoting
    writer.writerows(map(_csv_row, items))
    return buf.getvalue().encode()


def _render_yaml(items: list[dict[str, Any]]) -> bytes:
    out: bytes = yaml.dump(
        [_plain(i) for i in items],
        Dumper=_YamlDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        encoding="utf-8",
    )
    return out


def _render_msgpack(items: list[dict[str, Any]]) -> bytes:
    return bytes(msgpack.packb([_plain(i) for i in items]))


_RENDERERS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
    "application/json": dump,
    "application/xml": _render_xml,
    "application/yaml": _render_yaml,
    "text/csv": lambda items: _CSV_HEADER + _csv_rows(items),
    "application/msgpack": _render_msgpack,
}


def render_products(items: list[dict[str, Any]], media_type: str) -> bytes:
    """The ``/products`` body: a list of items (a JSON/YAML/msgpack array, an XML
    ``<products>`` element, or CSV rows under a header) in ``media_type``."""
    try:
        render = _RENDERERS[media_type]
    except KeyError:
        raise ValueError(f"cannot render products as {media_type!r}") from None
    return render(items)


class StreamFormat(Protocol):
    """How one streamed body is framed: ``head``, any number of ``batch``es, ``tail``."""

    media_type: str

    def head(self) -> bytes: ...

    def batch(self, items: Sequence[dict[str, Any]]) -> bytes: ...

    def tail(self) -> bytes: ...


class _Ndjson:
    """One JSON object per line: each line stands alone, so a batch needs no state."""

    __slots__ = ()
    media_type = "application/x-ndjson"

    def head(self) -> bytes:
        return b""

    def batch(self, items: Sequence[dict[str, Any]]) -> bytes:
        return b"".join([dump(item) + b"\n" for item in items])

    def tail(self) -> bytes:
        return b""


class _JsonArray:
    """One JSON array across batches; the only state is whether a comma is due."""

    __slots__ = ("_started",)
    media_type = "application/json"

    def __init__(self) -> None:
        self._started = False

    def head(self) -> bytes:
        return b"["

    def batch(self, items: Sequence[dict[str, Any]]) -> bytes:
        if not items:
            return b""
        # orjson serialises the whole batch in one call; the brackets are cut off.
        body = dump(items if isinstance(items, list | tuple) else list(items))[1:-1]
        if self._started:
            return b"," + body
        self._started = True
        return body

    def tail(self) -> bytes:
        return b"]"


class _Csv:
    """A header row, then RFC 4180 rows."""

    __slots__ = ()
    media_type = "text/csv"

    def head(self) -> bytes:
        return _CSV_HEADER

    def batch(self, items: Sequence[dict[str, Any]]) -> bytes:
        return _csv_rows(items) if items else b""

    def tail(self) -> bytes:
        return b""


def stream_format(media_type: str) -> StreamFormat:
    """A fresh framer for one stream (the JSON one holds per-stream state)."""
    if media_type == "application/x-ndjson":
        return _Ndjson()
    if media_type == "application/json":
        return _JsonArray()
    if media_type == "text/csv":
        return _Csv()
    raise ValueError(f"cannot stream items as {media_type!r}")


def sse_event(seq: int, count: int) -> bytes:
    """One ``text/event-stream`` event (SPEC §3.9)."""
    return b'id: %d\ndata: {"seq": %d, "count": %d}\n\n' % (seq, seq, count)

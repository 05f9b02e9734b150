"""The conformance cases as plain data: read by the tests here and by the benchmark harness.

Nothing here imports pytest or talks HTTP. Each table names the SPEC section it checks.
Paths include their query string exactly as sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = [
    "ACCEPT_ENCODING",
    "BAD_REQUESTS",
    "DEVIATIONS",
    "INJECTIONS",
    "ITEM_BODIES",
    "METHODS",
    "PRODUCTS_ACCEPT",
    "QUERIES_CLAMP",
    "ROUTES",
    "STREAM_ACCEPT",
    "TASK_BODIES",
    "UNKNOWN_PATHS",
    "BodyCase",
    "Case",
    "Route",
    "oversize",
    "within_limit",
]

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
CATEGORIES = ("books", "electronics", "garden", "grocery", "health", "music", "sports", "toys")


@dataclass(frozen=True, slots=True)
class Route:
    """A happy-path request: what every pair must answer, and with which media type."""

    section: str
    method: str
    path: str
    status: int
    media_type: str


@dataclass(frozen=True, slots=True)
class Case:
    """A request the SPEC rejects: its status, problem slug and, for 422, the ``loc`` one of
    the listed errors must start with."""

    section: str
    method: str
    path: str
    status: int
    slug: str
    loc: tuple[str | int, ...] | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        accept = dict(self.headers).get("Accept")
        return f"{self.method} {self.path}" + (f" [Accept: {accept}]" if accept else "")


@dataclass(frozen=True, slots=True)
class BodyCase:
    """A request body for a POST route and the answer the SPEC gives it."""

    id: str
    section: str
    body: bytes
    content_type: str | None
    status: int
    slug: str | None = None
    loc: tuple[str | int, ...] | None = None


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


# --- Happy paths (SPEC §3) -------------------------------------------------------------------

ROUTES: tuple[Route, ...] = (
    Route("§3.1", "GET", "/plaintext", 200, "text/plain"),
    Route("§3.1", "GET", "/json", 200, "application/json"),
    Route("§3.1", "GET", "/db", 200, "application/json"),
    Route("§3.1", "GET", "/queries?queries=20", 200, "application/json"),
    Route("§3.1", "GET", "/updates?queries=20", 200, "application/json"),
    Route("§3.1", "GET", "/fortunes", 200, "text/html"),
    Route("§3.3", "GET", "/items/1", 200, "application/json"),
    Route("§3.4", "GET", "/items?limit=20", 200, "application/json"),
    Route("§3.5", "GET", "/items/batch?ids=1,5,9", 200, "application/json"),
    Route("§3.6", "GET", "/cached/items/1", 200, "application/json"),
    Route("§3.7", "GET", "/limited", 200, "application/json"),
    Route("§3.8", "GET", "/stream/items?count=100", 200, "application/x-ndjson"),
    Route("§3.9", "GET", "/stream/events?count=3&interval_ms=0", 200, "text/event-stream"),
    Route("§3.10", "GET", "/report?rows=1000", 200, "application/json"),
    Route("§3.11", "GET", "/products", 200, "application/json"),
    Route("§3.12", "GET", "/aggregate?n=10&delay_ms=20", 200, "application/json"),
    Route("§3.14", "GET", "/cpu?n=1000", 200, "application/json"),
    Route("§3.16", "GET", "/health", 200, "application/json"),
)

# --- §3.1: the TechEmpower `queries` clamp (query string → rows returned) --------------------

QUERIES_CLAMP: tuple[tuple[str, int], ...] = (
    ("", 1),
    ("queries=foo", 1),
    ("queries=", 1),
    ("queries=1.5", 1),
    ("queries=0", 1),
    ("queries=-5", 1),
    ("queries=1", 1),
    ("queries=20", 20),
    ("queries=500", 500),
    ("queries=501", 500),
)

# --- Rejected requests (SPEC §2.1 and the validation rules of §3) ------------------------------


def _v(section: str, path: str, where: str, name: str) -> Case:
    return Case(section, "GET", path, 422, "validation", (where, name))


_IDS_101 = ",".join(str(i) for i in range(1, 102))

# §2.1 routing: exact paths, whatever a server does with the path it was sent.
UNKNOWN_PATHS: tuple[Case, ...] = (
    Case("§2.1", "GET", "/nope", 404, "not-found"),
    Case("§2.1", "GET", "/json/extra", 404, "not-found"),
    Case("§2.1", "GET", "/json/", 404, "not-found"),
    Case("§2.1", "GET", "/items/1/extra", 404, "not-found"),
)

BAD_REQUESTS: tuple[Case, ...] = (
    # §3.3 item by id
    _v("§3.3", "/items/abc", "path", "id"),
    _v("§3.3", "/items/1.5", "path", "id"),
    _v("§3.3", "/items/1e3", "path", "id"),
    _v("§3.3", f"/items/{INT32_MAX + 1}", "path", "id"),
    _v("§3.3", f"/items/{INT32_MIN - 1}", "path", "id"),
    _v("§3.3", "/items/99999999999999999999", "path", "id"),
    Case("§3.3", "GET", "/items/0", 404, "not-found"),
    Case("§3.3", "GET", "/items/-1", 404, "not-found"),
    Case("§3.3", "GET", f"/items/{INT32_MIN}", 404, "not-found"),
    Case("§3.3", "GET", f"/items/{INT32_MAX}", 404, "not-found"),
    # §3.4 pages
    _v("§3.4", "/items?limit=0", "query", "limit"),
    _v("§3.4", "/items?limit=101", "query", "limit"),
    _v("§3.4", "/items?limit=-1", "query", "limit"),
    _v("§3.4", "/items?limit=abc", "query", "limit"),
    _v("§3.4", "/items?limit=1.5", "query", "limit"),
    _v("§3.4", "/items?limit=", "query", "limit"),
    _v("§3.4", "/items?after=-1", "query", "after"),
    _v("§3.4", f"/items?after={INT32_MAX + 1}", "query", "after"),
    _v("§3.4", "/items?after=x", "query", "after"),
    _v("§3.4", "/items?category=bogus", "query", "category"),
    _v("§3.4", "/items?category=Books", "query", "category"),
    _v("§3.4", "/items?category=", "query", "category"),
    _v("§3.4", "/items?limit=10&after=5&category=nope", "query", "category"),
    # §3.5 batch
    _v("§3.5", "/items/batch", "query", "ids"),
    _v("§3.5", "/items/batch?ids=", "query", "ids"),
    _v("§3.5", "/items/batch?ids=1,a", "query", "ids"),
    _v("§3.5", "/items/batch?ids=1,,2", "query", "ids"),
    _v("§3.5", "/items/batch?ids=1.5", "query", "ids"),
    _v("§3.5", f"/items/batch?ids=1,{INT32_MAX + 1}", "query", "ids"),
    _v("§3.5", f"/items/batch?ids={_IDS_101}", "query", "ids"),
    # §3.6 cached item (validation and 404 as §3.3)
    _v("§3.6", "/cached/items/abc", "path", "id"),
    _v("§3.6", f"/cached/items/{INT32_MAX + 1}", "path", "id"),
    Case("§3.6", "GET", "/cached/items/0", 404, "not-found"),
    Case("§3.6", "GET", "/cached/items/99999999", 404, "not-found"),
    # §3.8 stream items
    _v("§3.8", "/stream/items?count=0", "query", "count"),
    _v("§3.8", "/stream/items?count=100001", "query", "count"),
    _v("§3.8", "/stream/items?count=-5", "query", "count"),
    _v("§3.8", "/stream/items?count=abc", "query", "count"),
    Case(
        "§3.8",
        "GET",
        "/stream/items?count=5",
        406,
        "not-acceptable",
        headers=(("Accept", "application/xml"),),
    ),
    Case(
        "§3.8",
        "GET",
        "/stream/items?count=5",
        406,
        "not-acceptable",
        headers=(("Accept", "text/html, image/png;q=0.5"),),
    ),
    # §3.9 events
    _v("§3.9", "/stream/events?count=0", "query", "count"),
    _v("§3.9", "/stream/events?count=1001", "query", "count"),
    _v("§3.9", "/stream/events?count=x", "query", "count"),
    _v("§3.9", "/stream/events?interval_ms=-1", "query", "interval_ms"),
    _v("§3.9", "/stream/events?interval_ms=10001", "query", "interval_ms"),
    _v("§3.9", "/stream/events?interval_ms=x", "query", "interval_ms"),
    # each in range, but 999 intervals of 100 ms: past the one-minute bound on a stream
    _v("§3.9", "/stream/events?count=1000&interval_ms=100", "query", "interval_ms"),
    # §3.10 report
    _v("§3.10", "/report?rows=0", "query", "rows"),
    _v("§3.10", "/report?rows=5001", "query", "rows"),
    _v("§3.10", "/report?rows=x", "query", "rows"),
    # §3.11 products
    Case("§3.11", "GET", "/products", 406, "not-acceptable", headers=(("Accept", "text/html"),)),
    # §3.12 aggregate
    _v("§3.12", "/aggregate?n=0", "query", "n"),
    _v("§3.12", "/aggregate?n=51", "query", "n"),
    _v("§3.12", "/aggregate?n=x", "query", "n"),
    _v("§3.12", "/aggregate?delay_ms=-1", "query", "delay_ms"),
    _v("§3.12", "/aggregate?delay_ms=10001", "query", "delay_ms"),
    _v("§3.12", "/aggregate?delay_ms=x", "query", "delay_ms"),
    # §3.14 cpu
    _v("§3.14", "/cpu?n=0", "query", "n"),
    _v("§3.14", "/cpu?n=-1", "query", "n"),
    _v("§3.14", "/cpu?n=10000001", "query", "n"),
    _v("§3.14", "/cpu?n=x", "query", "n"),
    # §3.15 tasks
    Case("§3.15", "GET", "/tasks/" + "f" * 32, 404, "not-found"),
    Case("§3.15", "GET", "/tasks/" + "0" * 32, 404, "not-found"),
)

# --- §2.1: known route, wrong method → 405 with Allow (method, path, methods Allow must list) --

METHODS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("POST", "/json", frozenset({"GET"})),
    ("POST", "/plaintext", frozenset({"GET"})),
    ("DELETE", "/items/1", frozenset({"GET"})),
    ("POST", "/items/1", frozenset({"GET"})),
    ("PUT", "/items", frozenset({"GET", "POST"})),
    ("DELETE", "/items", frozenset({"GET", "POST"})),
    ("GET", "/tasks", frozenset({"POST"})),
    ("POST", "/health", frozenset({"GET"})),
    ("PATCH", "/cached/items/1", frozenset({"GET"})),
)

# --- §3.13 POST /items bodies ----------------------------------------------------------------

_OK_ITEM = {"name": "conformance", "category": "toys", "price": 1}
_BIG = 70_000


def _item(**changes: object) -> bytes:
    return _json({**_OK_ITEM, **changes})


def _without(key: str) -> bytes:
    return _json({k: v for k, v in _OK_ITEM.items() if k != key})


def _b(
    id_: str,
    body: bytes,
    ctype: str | None,
    status: int,
    slug: str | None = None,
    loc: tuple[str | int, ...] | None = None,
    section: str = "§3.13",
) -> BodyCase:
    return BodyCase(id_, section, body, ctype, status, slug, loc)


_J = "application/json"

ITEM_BODIES: tuple[BodyCase, ...] = (
    # 413 comes before everything that looks at the body (§2.1 order 405 → 413 → 415 → 400 → 422)
    _b("too-large", _item(name="x" * _BIG), _J, 413, "payload-too-large"),
    _b("too-large-wrong-type", _item(name="x" * _BIG), "text/plain", 413, "payload-too-large"),
    _b("too-large-malformed", b"{" * _BIG, _J, 413, "payload-too-large"),
    # 415 before 400
    _b("text-plain", _item(), "text/plain", 415, "unsupported-media-type"),
    _b("no-content-type", _item(), None, 415, "unsupported-media-type"),
    _b(
        "form",
        b"name=x&category=toys&price=1",
        "application/x-www-form-urlencoded",
        415,
        "unsupported-media-type",
    ),
    _b("jsonx", _item(), "application/jsonx", 415, "unsupported-media-type"),
    _b("malformed-wrong-type", b"{", "text/plain", 415, "unsupported-media-type"),
    # 400 before 422
    _b("malformed", b'{"name": ', _J, 400, "malformed-json"),
    _b("trailing-garbage", _item() + b" x", _J, 400, "malformed-json"),
    _b("empty", b"", _J, 400, "malformed-json"),
    _b("single-quotes", b"{'name': 'x'}", _J, 400, "malformed-json"),
    # nesting past the contract's 32 levels, where recursive decoders would hit Python's
    # recursion limit (SPEC §2.1 decision)
    _b("nested-arrays", b"[" * 1_000 + b"]" * 1_000, _J, 400, "malformed-json"),
    _b("nested-objects", b'{"a":' * 1_000 + b"1" + b"}" * 1_000, _J, 400, "malformed-json"),
    # JSON text is UTF-8 without lone surrogates (SPEC §2.1 decision)
    _b(
        "invalid-utf8",
        b'{"name": "\xff", "category": "toys", "price": 1}',
        _J,
        400,
        "malformed-json",
    ),
    _b(
        "lone-surrogate",
        b'{"name": "\\ud800", "category": "toys", "price": 1}',
        _J,
        400,
        "malformed-json",
    ),
    # 422
    _b("name-nul", _item(name="a\u0000b"), _J, 422, "validation", ("body", "name")),
    _b("unknown-field", _item(color="red"), _J, 422, "validation", ("body",)),
    _b("missing-name", _without("name"), _J, 422, "validation", ("body",)),
    _b("missing-category", _without("category"), _J, 422, "validation", ("body",)),
    _b("missing-price", _without("price"), _J, 422, "validation", ("body",)),
    _b("name-int", _item(name=5), _J, 422, "validation", ("body", "name")),
    _b("name-null", _item(name=None), _J, 422, "validation", ("body", "name")),
    _b("name-empty", _item(name=""), _J, 422, "validation", ("body", "name")),
    _b("name-101", _item(name="x" * 101), _J, 422, "validation", ("body", "name")),
    _b("category-unknown", _item(category="weapons"), _J, 422, "validation", ("body", "category")),
    _b("category-case", _item(category="Toys"), _J, 422, "validation", ("body", "category")),
    _b("category-int", _item(category=3), _J, 422, "validation", ("body", "category")),
    _b("price-true", _item(price=True), _J, 422, "validation", ("body", "price")),
    _b("price-false", _item(price=False), _J, 422, "validation", ("body", "price")),
    _b("price-string", _item(price="12"), _J, 422, "validation", ("body", "price")),
    _b("price-null", _item(price=None), _J, 422, "validation", ("body", "price")),
    _b("price-negative", _item(price=-0.01), _J, 422, "validation", ("body", "price")),
    _b("price-over", _item(price=1_000_000.01), _J, 422, "validation", ("body", "price")),
    _b("array", b"[1, 2]", _J, 422, "validation", ("body",)),
    _b("string", b'"item"', _J, 422, "validation", ("body",)),
    _b("null", b"null", _J, 422, "validation", ("body",)),
)


def oversize(bodies: tuple[BodyCase, ...]) -> tuple[BodyCase, ...]:
    """The bodies past the size limit: what a server's way of reading a body can change."""
    return tuple(b for b in bodies if b.status == 413)


def within_limit(bodies: tuple[BodyCase, ...]) -> tuple[BodyCase, ...]:
    """The other bodies: the shared code's media type, JSON and validation rules."""
    return tuple(b for b in bodies if b.status != 413)


# --- §3.15 POST /tasks bodies (an empty body and {} are valid) --------------------------------

TASK_BODIES: tuple[BodyCase, ...] = (
    _b("n-zero", _json({"n": 0}), _J, 422, "validation", ("body", "n"), "§3.15"),
    _b("n-over", _json({"n": 10_000_001}), _J, 422, "validation", ("body", "n"), "§3.15"),
    _b("n-string", _json({"n": "5"}), _J, 422, "validation", ("body", "n"), "§3.15"),
    _b("n-float", _json({"n": 1.5}), _J, 422, "validation", ("body", "n"), "§3.15"),
    _b(
        "delay-negative",
        _json({"delay_ms": -1}),
        _J,
        422,
        "validation",
        ("body", "delay_ms"),
        "§3.15",
    ),
    _b(
        "delay-over",
        _json({"delay_ms": 10_001}),
        _J,
        422,
        "validation",
        ("body", "delay_ms"),
        "§3.15",
    ),
    _b("unknown-field", _json({"n": 5, "x": 1}), _J, 422, "validation", ("body",), "§3.15"),
    _b("array", b"[]", _J, 422, "validation", ("body",), "§3.15"),
    _b("malformed", b"{", _J, 400, "malformed-json", None, "§3.15"),
    _b("text-plain", b"{}", "text/plain", 415, "unsupported-media-type", None, "§3.15"),
    _b(
        "too-large", _json({"n": 5, "pad": "x" * _BIG}), _J, 413, "payload-too-large", None, "§3.15"
    ),
)

# --- §3.11 content negotiation for /products (Accept → media type, None = 406) ----------------

PRODUCTS_ACCEPT: tuple[tuple[str | None, str | None], ...] = (
    (None, "application/json"),
    ("*/*", "application/json"),
    ("application/json", "application/json"),
    ("application/xml", "application/xml"),
    ("application/yaml", "application/yaml"),
    ("text/csv", "text/csv"),
    ("application/msgpack", "application/msgpack"),
    # q-values
    ("application/xml;q=0.5, text/csv", "text/csv"),
    ("application/msgpack;q=1, application/json;q=0.9", "application/msgpack"),
    ("text/csv;q=0.9, */*;q=0.1", "text/csv"),
    # wildcards; ties go to json, xml, yaml, csv, msgpack
    ("application/*", "application/json"),
    ("text/*", "text/csv"),
    ("application/yaml, application/xml", "application/xml"),
    ("application/msgpack, text/csv", "text/csv"),
    # the most specific range decides a type's q, both ways
    ("*/*;q=0.1, application/xml", "application/xml"),
    ("application/*;q=0, application/json", "application/json"),
    ("application/*;q=0, */*", "text/csv"),
    ("application/json;q=0, */*", "application/xml"),
    ("*/*;q=0.5, application/json;q=0.4", "application/xml"),
    # nothing acceptable
    ("text/html", None),
    ("application/json;q=0", None),
    ("image/png, text/html;q=0.9", None),
    ("*/*;q=0", None),
)

# --- §3.8 format of /stream/items by Accept (None = 406) --------------------------------------

STREAM_ACCEPT: tuple[tuple[str | None, str | None], ...] = (
    (None, "application/x-ndjson"),
    ("*/*", "application/x-ndjson"),
    ("application/x-ndjson", "application/x-ndjson"),
    ("application/json", "application/json"),
    ("text/csv", "text/csv"),
    ("text/csv, application/json;q=0.5", "text/csv"),
    ("application/json, application/x-ndjson", "application/x-ndjson"),
    ("text/*", "text/csv"),
    ("application/xml", None),
)

# --- §2.3 Accept-Encoding → the coding chosen (None = uncompressed; header None = absent) -----

ACCEPT_ENCODING: tuple[tuple[str | None, str | None], ...] = (
    (None, None),
    ("", None),
    ("identity", None),
    ("gzip", "gzip"),
    ("x-gzip", "gzip"),
    ("GZIP", "gzip"),
    ("br", "br"),
    ("zstd", "zstd"),
    ("gzip, br, zstd", "zstd"),
    ("gzip, br", "br"),
    ("br;q=0.5, gzip;q=0.5", "br"),
    ("gzip;q=1.0, br;q=0.5", "gzip"),
    ("zstd;q=0.1, gzip;q=0.9", "gzip"),
    ("gzip, deflate", "gzip"),
    ("deflate", None),
    ("*", "zstd"),
    ("*, zstd;q=0", "br"),
    ("*;q=0.5, gzip", "gzip"),
    ("*;q=0", None),
    ("gzip;q=0", None),
    ("zstd;q=0, br;q=0, gzip;q=0", None),
)

# --- Injection-looking values for path and query parameters (never a 500) ---------------------

INJECTIONS: tuple[str, ...] = (
    "1;DROP TABLE items",
    "1; DROP TABLE items;--",
    "' OR 1=1--",
    "1 OR 1=1",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "../../etc/passwd",
    "%00",
    "1\x00",
    "\x00",
    "日本語",
    "💥",
    "9" * 400,
    "x" * 4000,
    "-0x10",
    "NaN",
    "1e309",
)


# SPEC.md's "Deviations": a rule a pair cannot meet, by pair id. The suite asserts the
# deviated behaviour for these pairs instead of the rule, so neither is skipped.
DEVIATIONS: dict[str, frozenset[str]] = {
    "flask-gunicorn": frozenset({"D1"}),  # one request per sync worker: /json waits for /cpu
    # hypercorn's master ends the other workers as soon as one exits: with more than one
    # worker a stop cuts what they still had in flight.
    "fastapi-hypercorn": frozenset({"D4"}),
    "litestar-hypercorn": frozenset({"D4"}),
}

"""SPEC §2.3 (compression of every route) and §3.10 (``/report``, the compression workload).

Bodies are read off the wire (``LabClient.raw``) and decoded by the test, so what is checked
is what was sent, not what httpx made of it.
"""

from __future__ import annotations

import pytest

from tests.conformance import cases
from tests.support.client import LabClient
from tests.support.expect import assert_media_type, db_item, json_body, same_item

pytestmark = pytest.mark.conformance

IDENTITY = {"Accept-Encoding": "identity"}


def test_report_shape(client: LabClient, db) -> None:
    """SPEC §3.10: ``{"rows": n, "items": [first n items by id]}``."""
    resp = client.get("/report?rows=3", headers=IDENTITY)
    assert resp.status_code == 200
    assert_media_type(resp, "application/json")
    body = json_body(resp)
    assert body["rows"] == 3 and set(body) == {"rows", "items"}
    assert [i["id"] for i in body["items"]] == [1, 2, 3]
    for item in body["items"]:
        same_item(item, db_item(db, item["id"]))


@pytest.mark.per_framework
@pytest.mark.parametrize(("rows", "count"), [(None, 1000), (1, 1), (5000, 5000)])
def test_report_rows_bounds(client: LabClient, rows: int | None, count: int) -> None:
    """SPEC §3.10: ``rows`` 1..5000, default 1000."""
    resp = client.get("/report" + (f"?rows={rows}" if rows else ""), headers=IDENTITY)
    assert resp.status_code == 200
    body = json_body(resp)
    assert body["rows"] == count
    assert [i["id"] for i in body["items"]] == list(range(1, count + 1))


@pytest.mark.parametrize("coding", ["zstd", "br", "gzip"])
def test_report_compressed_decodes_to_identity(client: LabClient, coding: str) -> None:
    """SPEC §2.3, §3.10: with each coding the body is compressed once (smaller than identity)
    and decodes to the same JSON as the uncompressed answer."""
    plain = client.raw("GET", "/report?rows=1000", headers=IDENTITY)
    assert "content-encoding" not in plain.headers
    assert plain.headers.get("content-length") == str(len(plain.wire))
    packed = client.raw("GET", "/report?rows=1000", headers={"Accept-Encoding": coding})
    assert packed.status_code == 200
    assert packed.headers.get("content-encoding") == coding
    assert len(packed.wire) < len(plain.wire) / 2
    assert json_body(packed.body) == json_body(plain.body)


@pytest.mark.per_framework
@pytest.mark.parametrize(
    ("accept_encoding", "coding"),
    cases.ACCEPT_ENCODING,
    ids=[repr(a) if a is not None else "absent" for a, _ in cases.ACCEPT_ENCODING],
)
def test_accept_encoding_negotiation(
    client: LabClient, accept_encoding: str | None, coding: str | None
) -> None:
    """SPEC §2.3: q-values, ``q=0`` forbids, ``*`` covers codings not named, ties → zstd > br
    > gzip, ``x-gzip`` is gzip, identity or nothing acceptable → uncompressed."""
    plain = client.raw("GET", "/report?rows=50", headers=IDENTITY)
    if accept_encoding is None:
        raw = client.raw("GET", "/report?rows=50", omit=("accept-encoding",))
    else:
        raw = client.raw("GET", "/report?rows=50", headers={"Accept-Encoding": accept_encoding})
    assert raw.status_code == 200
    got = raw.headers.get("content-encoding")
    if coding is None:
        assert got is None, f"compressed with {got} for Accept-Encoding {accept_encoding!r}"
        assert raw.wire == plain.wire
    else:
        allowed = {"gzip", "x-gzip"} if coding == "gzip" else {coding}
        assert got in allowed, f"{got} for Accept-Encoding {accept_encoding!r}, want {coding}"
        assert json_body(raw.body) == json_body(plain.body)


@pytest.mark.parametrize(
    "path", ["/json", "/plaintext", "/health", "/items/1", "/db", "/items/abc", "/nope"]
)
def test_small_bodies_are_not_compressed(client: LabClient, path: str) -> None:
    """SPEC §2.3: a complete body under LAB_COMPRESSION_MIN_SIZE (1000) is sent as is."""
    raw = client.raw("GET", path, headers={"Accept-Encoding": "zstd, br, gzip"})
    assert len(raw.body) < 1000
    assert "content-encoding" not in raw.headers


@pytest.mark.per_framework
def test_threshold_applies_by_length(client: LabClient) -> None:
    """SPEC §2.3: compressed exactly when the body is at least 1000 bytes: report sizes on
    both sides of the threshold."""
    sides = set()
    for rows in (1, 2, 3, 4, 6, 10):
        plain = client.raw("GET", f"/report?rows={rows}", headers=IDENTITY)
        raw = client.raw("GET", f"/report?rows={rows}", headers={"Accept-Encoding": "gzip"})
        big = len(plain.wire) >= 1000
        sides.add(big)
        assert (raw.headers.get("content-encoding") == "gzip") == big, (
            f"rows={rows}: {len(plain.wire)} bytes, Content-Encoding "
            f"{raw.headers.get('content-encoding')}"
        )
        assert raw.body == plain.body
    assert sides == {True, False}, "the sizes did not straddle the threshold"


@pytest.mark.per_framework
@pytest.mark.parametrize("accept", ["application/xml", "text/csv", "application/yaml"])
def test_other_routes_are_compressed_too(client: LabClient, accept: str) -> None:
    """SPEC §2.3: compression applies to every route (here /products, over 1000 bytes)."""
    plain = client.raw("GET", "/products", headers={"Accept": accept, **IDENTITY})
    raw = client.raw("GET", "/products", headers={"Accept": accept, "Accept-Encoding": "br"})
    assert len(plain.wire) >= 1000
    assert raw.headers.get("content-encoding") == "br"
    assert raw.body == plain.wire

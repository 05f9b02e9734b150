"""SPEC §3.1-§3.2: the TechEmpower group, with TechEmpower's rules."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.conformance import cases
from tests.support.client import LabClient
from tests.support.expect import assert_media_type, json_body

pytestmark = pytest.mark.conformance

EXTRA_FORTUNE = (0, "Additional fortune added at request time.")


def _assert_world(row: object) -> None:
    assert isinstance(row, dict) and set(row) == {"id", "randomNumber"}, row
    assert isinstance(row["id"], int) and 1 <= row["id"] <= 10_000, row
    assert isinstance(row["randomNumber"], int) and 1 <= row["randomNumber"] <= 10_000, row


def test_plaintext(client: LabClient) -> None:
    """SPEC §3.1: ``text/plain``, exactly ``Hello, World!``."""
    resp = client.get("/plaintext")
    assert resp.status_code == 200
    assert_media_type(resp, "text/plain")
    assert resp.content == b"Hello, World!"


def test_json(client: LabClient) -> None:
    """SPEC §3.1: ``{"message": "Hello, World!"}``."""
    resp = client.get("/json")
    assert resp.status_code == 200
    assert_media_type(resp, "application/json")
    assert json_body(resp) == {"message": "Hello, World!"}


def test_db(client: LabClient) -> None:
    """SPEC §3.1: one random world row ``{"id", "randomNumber"}``."""
    resp = client.get("/db")
    assert resp.status_code == 200
    assert_media_type(resp, "application/json")
    _assert_world(json_body(resp))


@pytest.mark.per_framework
@pytest.mark.parametrize(
    ("query", "count"), cases.QUERIES_CLAMP, ids=[q or "absent" for q, _ in cases.QUERIES_CLAMP]
)
def test_queries_clamp(client: LabClient, query: str, count: int) -> None:
    """SPEC §3.1: N clamped to 1..500; missing or not an integer → 1, never 422."""
    resp = client.get(f"/queries?{query}" if query else "/queries")
    assert resp.status_code == 200
    assert_media_type(resp, "application/json")
    rows = json_body(resp)
    assert isinstance(rows, list) and len(rows) == count
    for row in rows:
        _assert_world(row)


@pytest.mark.per_framework
@pytest.mark.parametrize(
    ("query", "count"), [("queries=20", 20), ("queries=foo", 1), ("queries=501", 500)]
)
def test_updates_are_written(client: LabClient, db, query: str, count: int) -> None:
    """SPEC §3.1: as /queries, and each row's new randomNumber is in the database, an id
    drawn twice included: the answer is what was stored."""
    resp = client.get(f"/updates?{query}")
    assert resp.status_code == 200
    assert_media_type(resp, "application/json")
    rows = json_body(resp)
    assert isinstance(rows, list) and len(rows) == count
    for row in rows:
        _assert_world(row)
    stored = dict(
        db.execute(
            "SELECT id, randomnumber FROM world WHERE id = ANY(%s)", ([r["id"] for r in rows],)
        ).fetchall()
    )
    wrong = [
        (r["id"], r["randomNumber"], stored.get(r["id"]))
        for r in rows
        if stored.get(r["id"]) != r["randomNumber"]
    ]
    assert not wrong, f"(id, answered, stored) not written back: {wrong[:10]}"


class _FortuneTable(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_fortunes(client: LabClient, db) -> None:
    """SPEC §3.1: all fortunes plus the request-time row, sorted by message, HTML-escaped
    (the ``<script>`` row shows as text), the Japanese row intact, ``text/html; charset=utf-8``."""
    resp = client.get("/fortunes")
    assert resp.status_code == 200
    ctype = resp.headers["content-type"].replace(" ", "").lower()
    assert ctype == "text/html;charset=utf-8", resp.headers["content-type"]
    html = resp.content.decode("utf-8")
    stored = [tuple(r) for r in db.execute("SELECT id, message FROM fortune").fetchall()]
    assert len(stored) == 12
    expected = sorted([*stored, EXTRA_FORTUNE], key=lambda r: r[1])
    parser = _FortuneTable()
    parser.feed(html)
    parser.close()
    assert parser.rows == [[str(i), m] for i, m in expected]
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "フレームワークのベンチマーク" in html

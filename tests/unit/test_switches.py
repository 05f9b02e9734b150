"""The experiment switches' pure parts (SPEC §6): settings, the two JSON encoders, the local
cache, and the replies that change shape under a switch. The servers are checked black-box
in tests/conformance/test_switches.py."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from common import formats, replies, sql
from common.httpcache import etag_for
from common.items import item_dict
from common.jsoncodec import orjson_dumps, stdlib_dumps
from common.localcache import LocalCache
from common.problems import Problem
from common.settings import SWITCHES, Settings, SettingsError, check_framework
from lab import matrix, seed

# -- Settings ---------------------------------------------------------------------------------


def test_defaults_are_todays_behaviour() -> None:
    s = Settings.from_env({})
    assert (s.json_codec, s.db_pool, s.cache, s.batch_query, s.pagination) == (
        "orjson",
        "pool",
        "redis",
        "batched",
        "keyset",
    )
    assert s.http_cache and s.streaming
    assert (s.upstream_client, s.handlers, s.limiter) == ("async", "async", "redis")
    assert s.local_cache_size == 10_000
    # An empty value is unset, as for every other LAB_* number.
    assert Settings.from_env(dict.fromkeys(SWITCHES, "")) == s


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in SWITCHES.items() for v in vs])
def test_every_value_is_accepted(name: str, value: str) -> None:
    Settings.from_env({name: value})


@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_bad_switch_values_stop_the_start(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: "ORJSON" if name == "LAB_JSON_CODEC" else "bogus"})


@pytest.mark.parametrize("raw", ["0", "-1", "x", "10000001"])
def test_local_cache_size_is_bounded(raw: str) -> None:
    with pytest.raises(SettingsError, match="LAB_LOCAL_CACHE_SIZE"):
        Settings.from_env({"LAB_LOCAL_CACHE_SIZE": raw})


def test_two_switches_on_one_route_are_refused() -> None:
    with pytest.raises(SettingsError, match="one at a time"):
        Settings.from_env({"LAB_HANDLERS": "sync", "LAB_UPSTREAM_CLIENT": "blocking"})


def test_frameworks_refuse_switches_they_do_not_implement() -> None:
    frameworks = [f.name for f in matrix.frameworks()]
    sync = Settings.from_env({"LAB_HANDLERS": "sync"})
    blocking = Settings.from_env({"LAB_UPSTREAM_CLIENT": "blocking"})
    no_reset_query = Settings.from_env({"LAB_DB_RESET": "rollback"})
    for fw in frameworks:
        check_framework(Settings.from_env({}), fw)
        if fw == "fastapi":
            assert check_framework(sync, fw) is sync
        else:
            with pytest.raises(SettingsError, match="LAB_HANDLERS=sync applies only to fastapi"):
                check_framework(sync, fw)
        if fw == "flask":
            with pytest.raises(SettingsError, match="LAB_UPSTREAM_CLIENT"):
                check_framework(blocking, fw)
            with pytest.raises(SettingsError, match="LAB_DB_RESET=rollback applies only to"):
                check_framework(no_reset_query, fw)  # psycopg_pool runs no reset query anyway
        else:
            check_framework(blocking, fw)
            check_framework(no_reset_query, fw)


# -- LAB_JSON_CODEC ----------------------------------------------------------------------------


def _as_fetched(row: seed.ItemRow, tz: Any) -> tuple[Any, ...]:
    """A seed row as a driver returns it: price cast to float8 by the SQL, created_at in
    UTC (asyncpg: ``timezone.utc``; psycopg with ``TimeZone=UTC``: a ``ZoneInfo``)."""
    item_id, name, category, price, description, created_at = row
    return (item_id, name, category, float(price), description, created_at.astimezone(tz))


@functools.cache
def _seed_rows() -> list[seed.ItemRow]:
    return [seed.item_row(i) for i in range(1, seed.ITEM_COUNT + 1)]


@pytest.mark.parametrize("tz", [UTC, ZoneInfo("UTC")], ids=["asyncpg", "psycopg"])
def test_stdlib_writes_orjson_bytes_for_every_seed_item(tz: Any) -> None:
    """Every one of the 100,000 seed rows, alone and as the page and report bodies."""
    rows = [_as_fetched(row, tz) for row in _seed_rows()]
    for row in rows:
        item = item_dict(row)
        assert stdlib_dumps(item) == orjson_dumps(item), row
    report = {"rows": 5000, "items": [item_dict(r) for r in rows[:5000]]}
    assert stdlib_dumps(report) == orjson_dumps(report)


def test_stdlib_writes_orjson_bytes_for_the_other_bodies() -> None:
    bodies: list[Any] = [
        {"message": "Hello, World!"},
        [{"id": 1, "randomNumber": 42}, {"id": 10000, "randomNumber": 1}],
        {"items": [], "next": None},
        {"items": [], "next": "/items?limit=20&after=20&category=books"},
        {"results": [{"i": 0, "delay_ms": 20, "value": 0}], "errors": [], "elapsed_ms": 0.0},
        {"results": [], "errors": [{"i": 1, "error": "timeout"}], "elapsed_ms": 1000.123},
        {"n": 10_000_000, "result": 1_000_000_006},
        {"id": "ab" * 16, "status": "done", "created_at": "2026-01-01T00:00:00Z"},
        {"status": "ok", "db": "ok", "cache": "down"},
        Problem(422, "bad", extra={"errors": [{"loc": ["query", "ids"], "msg": "x"}]}).as_dict(),
        # POST /items: any name (controls, quotes, non-ASCII, U+2028), any price it accepts.
        item_dict(
            (100001, 'a\x01"\\/\u2028é😀\x7f', "toys", 0.0, "", datetime(2026, 1, 1, tzinfo=UTC))
        ),
        item_dict((7, "x", "toys", 1_000_000.0, "", datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=UTC))),
    ]
    bodies += [{"elapsed_ms": round(i * 0.0137, 3)} for i in range(2000)]
    bodies += [{"price": round(c / 100, 2)} for c in range(0, 100_000_001, 9_973)]
    for body in bodies:
        assert stdlib_dumps(body) == orjson_dumps(body), body


@pytest.mark.parametrize(
    "when",
    [
        datetime(2024, 2, 29, 23, 59, 59),  # naive: UTC
        datetime(2024, 1, 1, tzinfo=ZoneInfo("Europe/London")),  # zero offset, not "UTC"
        datetime(2024, 7, 1, 12, 0, 0, 1, tzinfo=ZoneInfo("Europe/Paris")),  # +02:00 kept
        datetime(2024, 7, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ],
)
def test_datetimes_match_orjsons_options(when: datetime) -> None:
    assert stdlib_dumps(when) == orjson_dumps(when)


def test_where_the_encoders_differ_no_lab_payload_goes() -> None:
    """The documented limits (common/jsoncodec.py): tiny floats and Decimal."""
    assert orjson_dumps(1e-5) != stdlib_dumps(1e-5)
    assert orjson_dumps(0.001) == stdlib_dumps(0.001)  # the smallest elapsed_ms
    for encode in (orjson_dumps, stdlib_dumps):
        with pytest.raises(TypeError):
            encode(Decimal("1.10"))


@pytest.mark.parametrize("codec", SWITCHES["LAB_JSON_CODEC"])
def test_the_process_encoder_follows_the_variable(codec: str) -> None:
    code = "from common.items import dump; print(dump.__name__)"
    env = {**os.environ, "LAB_JSON_CODEC": codec}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"{codec}_dumps"


# -- LAB_CACHE=local -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_local_cache_expires_after_the_ttl() -> None:
    clock = Clock()
    cache = LocalCache(10, 60, timer=clock)
    cache.put("lab:item:1", b"{}")
    clock.now = 59.9
    assert cache.get("lab:item:1") == b"{}"
    clock.now = 60.0
    assert cache.get("lab:item:1") is None


def test_local_cache_is_bounded() -> None:
    cache = LocalCache(3, 60)
    for i in range(10):
        cache.put(f"lab:item:{i}", b"%d" % i)
    assert len(cache) == 3
    assert cache.get("lab:item:9") == b"9" and cache.get("lab:item:0") is None


def test_local_cache_only_when_asked() -> None:
    assert LocalCache.for_settings(Settings.from_env({})) is None
    assert LocalCache.for_settings(Settings.from_env({"LAB_CACHE": "none"})) is None
    local = Settings.from_env({"LAB_CACHE": "local", "LAB_LOCAL_CACHE_SIZE": "2"})
    assert isinstance(LocalCache.for_settings(local), LocalCache)


# -- LAB_HTTP_CACHE=off ------------------------------------------------------------------------


def test_without_validators_no_etag_and_no_304() -> None:
    body = b'{"id":1}'
    tag = etag_for(body)
    on = replies.cached_item_reply(body, ttl_s=60, x_cache="HIT", if_none_match=tag)
    assert on.status == 304 and on.headers["ETag"] == tag
    off = replies.cached_item_reply(
        body, ttl_s=60, x_cache="HIT", if_none_match=tag, validators=False
    )
    assert off.status == 200 and off.body == body
    assert dict(off.headers) == {"Cache-Control": "public, max-age=60", "X-Cache": "HIT"}


# -- LAB_PAGINATION=offset ---------------------------------------------------------------------


def _rows(first: int, count: int) -> list[tuple[Any, ...]]:
    return [_as_fetched(seed.item_row(i), UTC) for i in range(first, first + count)]


@pytest.mark.parametrize("after", [0, 20, 99_970])
def test_offset_pages_equal_keyset_pages_on_contiguous_ids(after: int) -> None:
    limit = 20
    rows = _rows(after + 1, min(limit + 1, seed.ITEM_COUNT - after))
    keyset = replies.page_reply(rows, limit, None)
    offset = replies.page_reply(rows, limit, None, offset=after)
    assert offset.body == keyset.body


def test_offset_next_counts_rows_within_a_category() -> None:
    rows = [(i, *row[1:]) for i, row in zip([3, 9, 12], _rows(1, 3), strict=True)]
    body = orjson.loads(replies.page_reply(rows, 2, "books", offset=40).body)
    assert body["next"] == "/items?limit=2&after=42&category=books"
    body = orjson.loads(replies.page_reply(rows, 2, "books").body)
    assert body["next"] == "/items?limit=2&after=9&category=books"


def test_page_statements() -> None:
    assert sql.page_statement(False, None) == sql.ITEMS_PAGE
    assert sql.page_statement(True, "books") == sql.ITEMS_PAGE_OFFSET_IN_CATEGORY
    # Same argument order (after, limit + 1, category) for all four, in the text's order.
    assert sql.placeholder_order(sql.ITEMS_PAGE_OFFSET) == [1, 0]
    assert sql.placeholder_order(sql.ITEMS_PAGE_OFFSET_IN_CATEGORY) == [2, 1, 0]
    assert "OFFSET $1" in sql.ITEMS_PAGE_OFFSET and "LIMIT $2" in sql.ITEMS_PAGE_OFFSET


# -- LAB_STREAMING=off -------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", formats.STREAM_TYPES)
def test_whole_body_is_the_streamed_bytes(media_type: str) -> None:
    rows = _rows(1, 1234)
    fmt = formats.stream_format(media_type)
    streamed = fmt.head()
    for start in range(0, len(rows), 500):
        streamed += fmt.batch([item_dict(r) for r in rows[start : start + 500]])
    streamed += fmt.tail()
    whole = replies.whole_stream_reply(rows, formats.stream_format(media_type))
    assert whole.body == streamed
    assert whole.media_type == formats.content_type_header(media_type)
    assert whole.headers == {"Vary": "Accept"}

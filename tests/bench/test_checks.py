"""The single-request check made before and after each cell."""

from __future__ import annotations

import gzip
import json
from typing import Any

import brotli
import zstandard

from bench.checks import evaluate, forget_cached
from common import keys
from lab.scenarios import scenario, scenarios

JSON = {"content-type": "application/json"}


def test_json_scenario_passes_and_fails() -> None:
    sc = scenario("json")
    assert evaluate(sc, 200, JSON, b'{"message":"Hello, World!"}') == []
    problems = evaluate(sc, 500, {"content-type": "text/html"}, b"oops")
    assert "status 500, expected 200" in problems
    assert any(p.startswith("content-type 'text/html'") for p in problems)
    assert any("body lacks" in p for p in problems)


def test_media_type_parameters_are_ignored() -> None:
    sc = scenario("plaintext")
    assert evaluate(sc, 200, {"content-type": "text/plain; charset=utf-8"}, b"Hello, World!") == []


def _report(rows: int) -> bytes:
    return json.dumps({"rows": rows, "items": [{"id": i} for i in range(rows)]}).encode()


def test_compressed_bodies_are_decoded() -> None:
    body = _report(1000)
    for sc_id, coding, packed in [
        ("report-gzip", "gzip", gzip.compress(body)),
        ("report-br", "br", brotli.compress(body)),
        ("report-zstd", "zstd", zstandard.ZstdCompressor().compress(body)),
    ]:
        headers = {**JSON, "content-encoding": coding}
        assert evaluate(scenario(sc_id), 200, headers, packed) == [], sc_id
    problems = evaluate(scenario("report-gzip"), 200, JSON, body)
    assert problems == ["content-encoding 'missing', expected 'gzip'"]
    problems = evaluate(
        scenario("report-gzip"),
        200,
        {**JSON, "content-encoding": "gzip"},
        gzip.compress(_report(999)),
    )
    assert problems == ["JSON 'items': 999, expected 1000 elements"]


def test_headers_and_arrays() -> None:
    sc = scenario("cached-items-hit")
    item = json.dumps({"id": 1, "created_at": "2024-01-01T00:00:00Z"}).encode()
    assert evaluate(sc, 200, {**JSON, "x-cache": "HIT", "etag": '"x"'}, item) == []
    assert evaluate(sc, 200, {**JSON, "x-cache": "MISS"}, item) == [
        "header x-cache: 'MISS', expected 'HIT'",
        "header etag missing",
    ]
    sc = scenario("queries-20")
    assert evaluate(sc, 200, JSON, json.dumps([{}] * 20).encode()) == []
    assert evaluate(sc, 200, JSON, b"{}") == ["JSON array of dict, expected 20 elements"]


def test_ndjson_lines() -> None:
    sc = scenario("stream-items")
    headers = {"content-type": "application/x-ndjson"}
    body = b"".join(b'{"id":%d}\n' % i for i in range(1, 10001))
    assert evaluate(sc, 200, headers, body) == []
    assert evaluate(sc, 200, headers, body[: len(body) // 2]) != []


def test_created_item() -> None:
    sc = scenario("items-post")
    body = b'{"id":100001,"name":"bench item"}'
    assert evaluate(sc, 201, {**JSON, "location": "/items/100001"}, body) == []
    assert "header location missing" in evaluate(sc, 201, JSON, body)
    assert "status 200, expected 201" in evaluate(sc, 200, {**JSON, "location": "/x"}, body)


def test_every_primed_scenario_reads_the_item_cache() -> None:
    """forget_cached drops item cache keys: a primed scenario on another cache would need
    its own rule there."""
    primed = [s for s in scenarios() if s.prime]
    assert primed
    assert all(s.path == "/cached/items/{id}" and s.ids for s in primed)


def test_forget_cached_drops_the_id_range_only(services: Any, redis_client: Any) -> None:
    spec = scenario("cached-items-hit")
    assert spec.ids is not None
    low, high = spec.ids
    inside, outside = keys.item_key(low), keys.item_key(high + 1)
    redis_client.set(inside, b"x", ex=60)
    redis_client.set(outside, b"y", ex=60)
    try:
        assert forget_cached(services.redis_url, spec) >= 1
        assert redis_client.get(inside) is None
        assert redis_client.get(outside) == b"y"
    finally:
        redis_client.delete(inside, outside)

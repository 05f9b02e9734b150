"""SPEC §3.12: ``GET /aggregate``, concurrent fan-out to the lab's upstream service.

Failure modes each need their own server configuration (an upstream that fails every 3rd
call, a short per-call timeout, an upstream URL where nothing listens); each is class-scoped
so only one extra server runs at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.client import LabClient
from tests.support.expect import assert_media_type, assert_problem, json_body
from tests.support.processes import free_port
from tests.support.servers import Server, ServerConfig

pytestmark = pytest.mark.conformance


def _base(n: int, indexes: list[int]) -> int:
    """The first call index: the SPEC says calls carry ``i`` but not whether it counts from
    0 or 1, so either is accepted as long as results and errors agree."""
    base = min(indexes) if indexes else 0
    assert base in (0, 1), f"call indexes start at {base}"
    assert sorted(indexes) == list(range(base, base + n)), indexes
    return base


def _split(body: dict[str, Any], n: int) -> tuple[list[dict], list[dict]]:
    assert set(body) >= {"results", "errors", "elapsed_ms"}, body.keys()
    assert isinstance(body["elapsed_ms"], int | float) and body["elapsed_ms"] >= 0
    results = [r for r in body["results"] if r is not None]
    errors = body["errors"]
    _base(n, [r["i"] for r in results] + [e["i"] for e in errors])
    assert [r["i"] for r in results] == sorted(r["i"] for r in results), "not in index order"
    return results, errors


def test_results_in_index_order(client: LabClient) -> None:
    """SPEC §3.12: ``results`` are the upstream bodies in index order; no errors."""
    resp = client.get("/aggregate?n=7&delay_ms=0")
    assert resp.status_code == 200
    assert_media_type(resp, "application/json")
    body = json_body(resp)
    results, errors = _split(body, 7)
    assert errors == []
    assert len(results) == 7
    for r in results:
        assert r == {"i": r["i"], "delay_ms": 0, "value": r["i"] ** 2}


def test_defaults(client: LabClient) -> None:
    """SPEC §3.12: n defaults to 10, delay_ms to 20."""
    body = json_body(client.get("/aggregate"))
    results, errors = _split(body, 10)
    assert errors == [] and len(results) == 10
    assert {r["delay_ms"] for r in results} == {20}
    assert body["elapsed_ms"] >= 20


def test_calls_are_concurrent(client: LabClient) -> None:
    """SPEC §3.12: the n calls run concurrently: 10 calls of 200 ms take at least 200 ms and
    well under 10 x 200 ms (behaviour, not a benchmark: the bound is 1000 ms)."""
    started = time.monotonic()
    body = json_body(client.get("/aggregate?n=10&delay_ms=200"))
    wall_ms = (time.monotonic() - started) * 1000
    results, errors = _split(body, 10)
    assert errors == [] and len(results) == 10
    assert 200 <= body["elapsed_ms"] < 1000, body["elapsed_ms"]
    assert wall_ms < 1000, f"the request took {wall_ms:.0f} ms"


def test_fifty_calls(client: LabClient) -> None:
    """SPEC §3.12: n up to 50."""
    results, errors = _split(json_body(client.get("/aggregate?n=50&delay_ms=0")), 50)
    assert errors == [] and len(results) == 50


@pytest.fixture(scope="class")
def flaky(pair, launch, flaky_upstream: str) -> Iterator[Server]:
    """Upstream answering 503 to every 3rd call."""
    with launch(pair, ServerConfig("flaky-upstream"), upstream_url=flaky_upstream) as srv:
        yield srv


@pytest.fixture(scope="class")
def slow(pair, launch) -> Iterator[Server]:
    """A 500 ms per-call upstream timeout."""
    config = ServerConfig("timeout-500ms", {"LAB_UPSTREAM_TIMEOUT_MS": "500"})
    with launch(pair, config) as srv:
        yield srv


@pytest.fixture(scope="class")
def orphaned(pair, launch) -> Iterator[Server]:
    """The upstream URL points at a port where nothing listens."""
    dead = f"http://127.0.0.1:{free_port()}"
    with launch(pair, ServerConfig("dead-upstream"), upstream_url=dead) as srv:
        yield srv


@pytest.mark.per_framework
class TestPartialFailure:
    """An upstream answering 503 to every 3rd call: failures are listed, the answer is 200."""

    def test_some_failures_are_listed(self, flaky: Server) -> None:
        """SPEC §3.12: 9 calls, every 3rd answered 503 → 200 with 6 results and 3 errors
        ``{"i", "error": "status 503"}``."""
        with flaky.client() as c:
            resp = c.get("/aggregate?n=9&delay_ms=0")
        assert resp.status_code == 200, resp.text[:300]
        results, errors = _split(json_body(resp), 9)
        assert len(results) == 6
        assert len(errors) == 3
        assert {e["error"] for e in errors} == {"status 503"}, errors
        assert [e["i"] for e in errors] == sorted(e["i"] for e in errors)


@pytest.mark.per_framework
class TestAllTimedOut:
    """A 500 ms per-call timeout against calls of 3000 ms."""

    def test_all_timeouts_are_504(self, slow: Server) -> None:
        """SPEC §3.12, §2.1: every call timed out → 504 ``upstream-timeout`` problem with the
        errors list, after about the timeout (not the full delay)."""
        started = time.monotonic()
        with slow.client() as c:
            resp = c.get("/aggregate?n=3&delay_ms=3000", allow={504})
        wall_ms = (time.monotonic() - started) * 1000
        doc = assert_problem(resp, 504, "upstream-timeout")
        assert sorted(e["error"] for e in doc["errors"]) == ["timeout"] * 3, doc
        _base(3, [e["i"] for e in doc["errors"]])
        assert wall_ms < 2000, f"answered after {wall_ms:.0f} ms; the timeout is 500 ms"

    def test_fast_calls_still_succeed(self, slow: Server) -> None:
        """SPEC §3.12: the timeout is per call; calls faster than it succeed."""
        with slow.client() as c:
            resp = c.get("/aggregate?n=5&delay_ms=0")
        assert resp.status_code == 200
        results, errors = _split(json_body(resp), 5)
        assert errors == [] and len(results) == 5


@pytest.mark.per_framework
class TestUpstreamDown:
    """The upstream URL points at a port where nothing listens."""

    def test_all_connection_failures_are_502(self, orphaned: Server) -> None:
        """SPEC §3.12, §2.1: every call failed, not by timeout → 502 ``upstream-error``
        problem listing ``connection`` errors."""
        with orphaned.client() as c:
            resp = c.get("/aggregate?n=3&delay_ms=0", allow={502})
        doc = assert_problem(resp, 502, "upstream-error")
        assert sorted(e["error"] for e in doc["errors"]) == ["connection"] * 3, doc
        _base(3, [e["i"] for e in doc["errors"]])

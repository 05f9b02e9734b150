"""Backend faults (SPEC §3.6, §3.7, §3.15, §3.16 and §2.1's 503): a private PostgreSQL and
Redis that these tests stop and restart under running servers.

The classes run in order for each pair: Redis down, Redis back, PostgreSQL down, PostgreSQL
back. Each class's fixture puts the services in its state and restores them afterwards.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.client import LabClient
from tests.support.expect import assert_problem, json_body
from tests.support.rules import etag_of
from tests.support.servers import Server, ServerConfig
from tests.support.services import PrivateServices

# The degraded paths are the shared code's (common/), whatever the server: one pair per framework.
pytestmark = [pytest.mark.conformance, pytest.mark.services, pytest.mark.per_framework]

RECOVERY_S = 10.0
FAIL_FAST_S = 5.0


@pytest.fixture(scope="session")
def private() -> Iterator[PrivateServices]:
    """PostgreSQL and Redis of our own, seeded, on fixed ports so a restart keeps the URL."""
    with PrivateServices("lab-test-faults") as services:
        yield services


@pytest.fixture(scope="module")
def healthy(private: PrivateServices) -> PrivateServices:
    private.start_postgres()
    private.start_redis()
    return private


@pytest.fixture(scope="module")
def open_server(pair, launch, healthy: PrivateServices) -> Iterator[Server]:
    with launch(pair, ServerConfig("private"), services_=healthy.urls) as srv:
        yield srv


@pytest.fixture(scope="module")
def closed_server(pair, launch, healthy: PrivateServices) -> Iterator[Server]:
    config = ServerConfig("private-fail-closed", {"LAB_LIMITER_FAIL": "closed"})
    with launch(pair, config, services_=healthy.urls) as srv:
        yield srv


@pytest.fixture
def oc(open_server: Server) -> Iterator[LabClient]:
    with open_server.client(timeout=15) as c:
        yield c


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = call()
    return resp, time.monotonic() - started


def _poll(
    call: Callable[[], httpx.Response], ok: Callable[[httpx.Response], bool], what: str
) -> httpx.Response:
    deadline = time.monotonic() + RECOVERY_S
    while True:
        resp = call()
        if ok(resp):
            return resp
        assert time.monotonic() < deadline, (
            f"{what} not back within {RECOVERY_S:.0f} s; last: {resp.status_code} "
            f"{dict(resp.headers)} {resp.text[:200]}"
        )
        time.sleep(0.1)


# Each class's state, as a class-scoped fixture the class uses (the servers start first,
# while both services are up).


@pytest.fixture(scope="class")
def redis_stopped(
    open_server: Server, closed_server: Server, private: PrivateServices
) -> Iterator[None]:
    private.stop_redis()
    yield
    private.start_redis()


@pytest.fixture(scope="class")
def redis_running(open_server: Server, private: PrivateServices) -> None:
    private.start_redis()


@pytest.fixture(scope="class")
def postgres_stopped(open_server: Server, private: PrivateServices) -> Iterator[None]:
    private.stop_postgres()
    yield
    private.start_postgres()


@pytest.fixture(scope="class")
def postgres_running(open_server: Server, private: PrivateServices) -> None:
    private.start_postgres()


@pytest.mark.usefixtures("redis_stopped")
class TestRedisDown:
    def test_cached_item_bypasses_the_cache(self, oc: LabClient) -> None:
        """SPEC §3.6: Redis down → served from PostgreSQL with ``X-Cache: BYPASS``, never an
        error, with its ETag."""
        resp, took = _timed(
            lambda: oc.get("/cached/items/3", headers={"Accept-Encoding": "identity"})
        )
        assert resp.status_code == 200, resp.text[:300]
        assert resp.headers.get("x-cache") == "BYPASS"
        assert json_body(resp) == json_body(oc.get("/items/3"))
        assert resp.headers.get("etag") == etag_of(resp.content)
        assert took < FAIL_FAST_S, f"took {took:.1f} s"

    def test_limiter_fails_open(self, oc: LabClient) -> None:
        """SPEC §3.7: Redis down → request served, ``RateLimit-Remaining`` absent."""
        resp, took = _timed(lambda: oc.get("/limited"))
        assert resp.status_code == 200, resp.text[:300]
        assert json_body(resp) == {"status": "ok"}
        assert "ratelimit-remaining" not in resp.headers
        assert took < FAIL_FAST_S, f"took {took:.1f} s"

    def test_limiter_fails_closed_when_configured(self, closed_server: Server) -> None:
        """SPEC §3.7, §2.1: with ``LAB_LIMITER_FAIL=closed`` → 503 ``backend-unavailable``."""
        with closed_server.client(timeout=15) as c:
            resp, took = _timed(lambda: c.get("/limited", allow={503}))
        assert_problem(resp, 503, "backend-unavailable")
        assert took < FAIL_FAST_S, f"took {took:.1f} s"

    def test_tasks_are_503(self, oc: LabClient) -> None:
        """SPEC §3.15: Redis down → 503 ``backend-unavailable`` for submitting and reading."""
        assert_problem(oc.post("/tasks", json={"n": 5}, allow={503}), 503, "backend-unavailable")
        assert_problem(
            oc.get("/tasks/" + secrets.token_hex(16), allow={503}), 503, "backend-unavailable"
        )

    def test_a_create_with_an_idempotency_key_is_503(self, oc: LabClient) -> None:
        """SPEC §3.13: without its record in Redis a retry could store the item twice, so a
        keyed ``POST /items`` is a 503; one without a key does not ask Redis (201)."""
        item = {"name": f"keyed {secrets.token_hex(6)}", "category": "toys", "price": 1}
        keyed = oc.post(
            "/items", json=item, headers={"Idempotency-Key": secrets.token_hex(8)}, allow={503}
        )
        assert_problem(keyed, 503, "backend-unavailable")
        assert oc.post("/items", json=item).status_code == 201

    def test_health_names_the_cache(self, oc: LabClient) -> None:
        """SPEC §3.16: 503 ``backend-unavailable`` with ``db: ok``, ``cache: down``."""
        doc = assert_problem(oc.get("/health", allow={503}), 503, "backend-unavailable")
        assert (doc.get("db"), doc.get("cache")) == ("ok", "down"), doc

    def test_database_routes_are_unaffected(self, oc: LabClient) -> None:
        """SPEC §3.3: routes that need only PostgreSQL keep working."""
        assert oc.get("/items/4").status_code == 200

    def test_the_log_says_what_was_served_degraded(
        self, open_server: Server, oc: LabClient
    ) -> None:
        """A BYPASS or a fail-open answer is correct, so only the server's log can tell a
        spurious one (Redis up, a connection broken) from an outage: each kind logs a line
        naming the error, at most one a second (common/degraded.py)."""
        oc.get("/cached/items/6", headers={"Accept-Encoding": "identity"})
        oc.get("/limited")
        wanted = (
            "Redis unavailable, cache bypassed: ",
            "Redis unavailable, rate limiter failing open: ",
        )
        deadline = time.monotonic() + FAIL_FAST_S  # the server's stderr reaches its file
        while not all(w in (log := open_server.process.log_text()) for w in wanted):
            assert time.monotonic() < deadline, open_server.process.log_tail()
            time.sleep(0.05)
        assert "Traceback" not in log


@pytest.mark.usefixtures("redis_running")
class TestRedisBack:
    def test_cache_is_used_again(self, oc: LabClient, private: PrivateServices) -> None:
        """SPEC §3.6: once Redis is back, MISS then HIT again (polled, bounded)."""
        import redis

        item = secrets.randbelow(100_000) + 1
        _poll(
            lambda: oc.get(f"/cached/items/{item}"),
            lambda r: r.status_code == 200 and r.headers.get("x-cache") != "BYPASS",
            "the cache",
        )
        client = redis.Redis.from_url(private.redis.url)
        try:
            client.delete(f"lab:item:{item}")
        finally:
            client.close()
        assert oc.get(f"/cached/items/{item}").headers.get("x-cache") == "MISS"
        assert oc.get(f"/cached/items/{item}").headers.get("x-cache") == "HIT"

    def test_limiter_counts_again(self, oc: LabClient) -> None:
        """SPEC §3.7: once Redis is back, the limiter's headers are back."""
        _poll(
            lambda: oc.get("/limited"), lambda r: "ratelimit-remaining" in r.headers, "the limiter"
        )

    def test_health_is_ok_again(self, oc: LabClient) -> None:
        """SPEC §3.16: 200 once both backends answer."""
        resp = _poll(
            lambda: oc.get("/health", allow={503}), lambda r: r.status_code == 200, "health"
        )
        assert json_body(resp) == {"status": "ok", "db": "ok", "cache": "ok"}


# A keyed POST /items sent while PostgreSQL is down (503), and sent again once it is back.
RETRIED_KEY = f"retried-{secrets.token_hex(8)}"
RETRIED_ITEM = {"name": f"retried {RETRIED_KEY}", "category": "toys", "price": 2}

_DB_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/items/1", {}),
    ("GET", "/items?limit=2", {}),
    ("GET", "/items/batch?ids=1,2", {}),
    ("GET", "/report?rows=2", {}),
    ("GET", "/products", {}),
    ("GET", "/db", {}),
    ("GET", "/queries?queries=2", {}),
    ("GET", "/fortunes", {}),
    ("GET", "/stream/items?count=2", {}),
    ("POST", "/items", {"json": {"name": "down", "category": "toys", "price": 1}}),
    ("POST", "/items", {"json": RETRIED_ITEM, "headers": {"Idempotency-Key": RETRIED_KEY}}),
]


@pytest.mark.usefixtures("postgres_stopped")
class TestPostgresDown:
    @pytest.mark.parametrize(
        ("method", "path", "kwargs"), _DB_ROUTES, ids=[f"{m} {p}" for m, p, _ in _DB_ROUTES]
    )
    def test_database_routes_are_503_quickly(
        self, oc: LabClient, method: str, path: str, kwargs: dict[str, Any]
    ) -> None:
        """SPEC §2.1: PostgreSQL unreachable → 503 ``backend-unavailable`` problem, within a
        bounded time (never a hang)."""
        try:
            resp, took = _timed(lambda: oc.request(method, path, allow={503}, **kwargs))
        except httpx.HTTPError as exc:
            pytest.fail(f"{method} {path}: the response broke off ({exc!r}) instead of a 503")
        assert_problem(resp, 503, "backend-unavailable")
        assert took < FAIL_FAST_S, f"took {took:.1f} s"

    def test_health_names_the_database(self, oc: LabClient) -> None:
        """SPEC §3.16: 503 ``backend-unavailable`` with ``db: down``, ``cache: ok``."""
        resp, took = _timed(lambda: oc.get("/health", allow={503}))
        doc = assert_problem(resp, 503, "backend-unavailable")
        assert (doc.get("db"), doc.get("cache")) == ("down", "ok"), doc
        assert took < FAIL_FAST_S, f"took {took:.1f} s"

    def test_routes_without_the_database_still_work(self, oc: LabClient) -> None:
        """SPEC §3.2: /json and /plaintext need no backend."""
        assert oc.get("/json").status_code == 200
        assert oc.get("/plaintext").status_code == 200


@pytest.mark.usefixtures("postgres_running")
class TestPostgresBack:
    def test_items_are_served_again(self, oc: LabClient) -> None:
        """SPEC §2.1: after PostgreSQL restarts on the same port, /items/1 is 200 again
        within 10 s (polled)."""
        _poll(lambda: oc.get("/items/1", allow={503}), lambda r: r.status_code == 200, "/items/1")
        _poll(lambda: oc.get("/health", allow={503}), lambda r: r.status_code == 200, "health")

    def test_a_keyed_create_retried_after_its_503_stores_one_row(
        self, oc: LabClient, private: PrivateServices
    ) -> None:
        """SPEC §3.13: the keyed POST that got a 503 while PostgreSQL was down, sent twice
        more: one row, and the same answer both times."""
        headers = {"Idempotency-Key": RETRIED_KEY}
        first = oc.post("/items", json=RETRIED_ITEM, headers=headers)
        again = oc.post("/items", json=RETRIED_ITEM, headers=headers)
        assert first.status_code == again.status_code == 201, (first.text, again.text)
        assert json_body(first) == json_body(again)
        assert again.headers.get("idempotent-replayed") == "true"
        with psycopg.connect(private.urls.database_url, autocommit=True) as db:
            row = db.execute(
                "SELECT count(*) FROM items WHERE name = %s", (RETRIED_ITEM["name"],)
            ).fetchone()
        assert row is not None and row[0] == 1

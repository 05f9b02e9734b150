"""SPEC §6: every experiment switch, black-box. A server started with the switch still serves
the contract on the routes the switch affects, with the bytes of the default server where the
switch promises them, and shows the switch's own effect; a framework the switch does not apply
to refuses to start with it.

Switches that cannot change what each other's tests observe share one server per pair (a
group, started on first use and stopped with the module); the default server of the session
(``server``) is the reference for identical bodies. A switch that applies to some frameworks
runs on their pairs, and each other framework's refusal is checked once.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from lab import matrix
from tests.conformance.conftest import Launch
from tests.support import pairs as pair_selection
from tests.support.addresses import fresh_loopback
from tests.support.client import LabClient, Raw
from tests.support.expect import assert_problem, json_body
from tests.support.processes import ProcessError
from tests.support.servers import Server, ServerConfig, ServersByConfig

pytestmark = pytest.mark.conformance

IDENTITY = {"Accept-Encoding": "identity"}
STREAM_TYPES = ("application/x-ndjson", "application/json", "text/csv")


@dataclass(frozen=True)
class Switch:
    name: str
    value: str
    # Switches of one group share a server: each group's switches touch disjoint routes or
    # promise the default server's bytes, so none changes what another's test observes.
    group: str
    # Frameworks the value applies to (None: all); the others must refuse to start with it.
    only: frozenset[str] | None = None
    # Settings its test needs beside the switch itself.
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.name.removeprefix('LAB_').lower()}={self.value}"


ASYNC = frozenset({"fastapi", "litestar", "aiohttp"})

SWITCHES = [
    # Promise the default's bytes (on the routes the others' tests read); the HTTP cache
    # switch reads through the Redis cache as the default server does.
    Switch("LAB_JSON_CODEC", "stdlib", "same-bytes"),
    Switch("LAB_DB_POOL", "connect", "same-bytes"),
    Switch("LAB_HTTP_CACHE", "off", "same-bytes"),
    Switch("LAB_BATCH_QUERY", "n_plus_one", "same-bytes"),
    Switch("LAB_STREAMING", "off", "same-bytes"),
    # The pool's reset (a pool, unlike `connect`), the local cache, the fan-out's client and
    # the limiter: four routes apart.
    Switch("LAB_DB_RESET", "rollback", "local-cache", ASYNC),
    Switch("LAB_CACHE", "local", "local-cache"),
    Switch("LAB_UPSTREAM_CLIENT", "blocking", "local-cache", ASYNC),
    Switch("LAB_LIMITER", "off", "local-cache", extra=(("LAB_RATE_LIMIT", "2/60s"),)),
    # No cache, offset pages (a category's `next` counts rows, so its bytes differ), admission
    # and FastAPI's `def` handlers: every request of their tests is sent alone, so one in
    # flight at a time refuses none of them. The admission test holds a fan-out in flight for
    # seconds (the default deadline is 1 s per call).
    Switch("LAB_CACHE", "none", "sequential"),
    Switch("LAB_PAGINATION", "offset", "sequential"),
    Switch("LAB_MAX_INFLIGHT", "1", "sequential", ASYNC, (("LAB_UPSTREAM_TIMEOUT_MS", "10000"),)),
    Switch("LAB_HANDLERS", "sync", "sequential", frozenset({"fastapi"})),
]


def group_config(group: str, framework: str) -> ServerConfig:
    """The server of one group for one framework: the group's switches that apply to it."""
    env: dict[str, str] = {}
    for s in SWITCHES:
        if s.group == group and (s.only is None or framework in s.only):
            env |= {s.name: s.value, **dict(s.extra)}
    return ServerConfig(f"switches-{group}", env)


class Pair:
    """Both servers of one comparison: the session's default one and the switched one."""

    def __init__(self, default: LabClient, switched: LabClient) -> None:
        self.default, self.switched = default, switched

    def raw(self, path: str, **headers: str) -> tuple[Raw, Raw]:
        h = {**IDENTITY, **headers}
        return self.default.raw("GET", path, headers=h), self.switched.raw("GET", path, headers=h)

    def same(self, path: str, *, status: int = 200, **headers: str) -> Raw:
        """The switched server answers ``path`` with the default server's exact bytes."""
        want, got = self.raw(path, **headers)
        assert want.status_code == got.status_code == status, (path, got.status_code)
        assert got.body == want.body, (
            f"{path}: bodies differ\n{want.body[:300]!r}\n{got.body[:300]!r}"
        )
        assert got.headers.get("content-type") == want.headers.get("content-type"), path
        return got


@pytest.fixture(scope="module")
def group_servers(pair: matrix.Pair, launch: Launch) -> Iterator[ServersByConfig]:
    servers = ServersByConfig(launch, pair)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def switched(
    request: pytest.FixtureRequest,
    pair: matrix.Pair,
    group_servers: ServersByConfig,
    server: Server,
) -> Iterator[Pair]:
    """The pair's server with the switch's group switched on, and the default server."""
    switch: Switch = request.param
    srv = group_servers.get(group_config(switch.group, pair.framework.name))
    with server.client() as default, srv.client() as client:
        yield Pair(default, client)


def by_switch(value: Switch) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Run the test with the switch, on the pairs of the frameworks it applies to."""

    def mark(test: Callable[..., None]) -> Callable[..., None]:
        test = pytest.mark.parametrize("switched", [value], ids=[value.id], indirect=True)(test)
        if value.only is not None:
            test = pytest.mark.frameworks(*sorted(value.only))(test)
        return test

    return mark


def switch(name: str, value: str) -> Switch:
    return next(s for s in SWITCHES if s.name == name and s.value == value)


# (pair, switch): the switch refused by the pair's framework, on the one pair per framework that
# runs the full tables (the refusal is the app's, at import, whatever the server).
REFUSALS = [
    (pair, s)
    for s in SWITCHES
    if s.only is not None
    for pair in pair_selection.select().tables
    if pair.framework.name not in s.only
]


@pytest.mark.parametrize(
    ("refusing", "refused"), REFUSALS, ids=[f"{p.framework.name}-{s.id}" for p, s in REFUSALS]
)
def test_a_switch_that_does_not_apply_is_refused_at_start(
    refusing: matrix.Pair, refused: Switch, launch: Launch
) -> None:
    """SPEC §6: a framework the switch does not apply to refuses to start with it, saying so."""
    pair = refusing
    config = ServerConfig(f"refused-{refused.id}", {refused.name: refused.value})
    with (
        pytest.raises(ProcessError, match=rf"{refused.name}={refused.value} applies only to"),
        launch(pair, config),
    ):
        pass


def _fresh_item(redis_client) -> int:
    item_id = secrets.randbelow(100_000) + 1
    redis_client.delete(f"lab:item:{item_id}")
    return item_id


# Deterministic routes whose bytes a switch that promises "identical bodies" must keep.
ITEM_ROUTES = (
    "/items/1",
    "/items/99999",
    "/items?limit=100&after=500",
    "/items?limit=7&after=0&category=garden",
    "/items/batch?ids=5,3,5,99999,0,100000",
    "/report?rows=5000",
    "/products",
)
PROBLEM_ROUTES = (("/items/0", 404), ("/items/x", 422), ("/items?limit=0", 422), ("/nope", 404))


def _same_items_and_problems(p: Pair) -> None:
    for path in ITEM_ROUTES:
        p.same(path)
    for path, status in PROBLEM_ROUTES:
        p.same(path, status=status)


def _same_streams(p: Pair, count: int = 1200) -> None:
    for media_type in STREAM_TYPES:
        p.same(f"/stream/items?count={count}", Accept=media_type)


# -- LAB_JSON_CODEC ----------------------------------------------------------------------------


@by_switch(switch("LAB_JSON_CODEC", "stdlib"))
def test_stdlib_json_writes_the_same_bytes(switched: Pair) -> None:
    """SPEC §6: every JSON body through the standard library's json, byte for byte orjson's:
    items (floats, timestamps), pages, batches, reports, streams, problems, TechEmpower."""
    p = switched
    _same_items_and_problems(p)
    _same_streams(p)
    p.same("/json")
    p.same("/cpu?n=1000")
    p.same("/health")
    for path in ("/db", "/queries?queries=3"):
        got = p.switched.get(path)
        assert (
            json_body(got)
            and got.content == json.dumps(json_body(got), separators=(",", ":")).encode()
        )


# -- LAB_DB_POOL, LAB_DB_RESET -----------------------------------------------------------------


@by_switch(switch("LAB_DB_POOL", "connect"))
def test_a_connection_per_request_serves_every_db_route(switched: Pair, redis_client) -> None:
    """SPEC §6: a fresh PostgreSQL connection per request (``LAB_DB_POOL=connect``)."""
    _serves_every_db_route(switched, redis_client)


@by_switch(switch("LAB_DB_RESET", "rollback"))
def test_a_pool_reset_by_rollback_serves_every_db_route(switched: Pair, redis_client) -> None:
    """SPEC §6: a pool that lends its connections back without asyncpg's reset query
    (``LAB_DB_RESET=rollback``; Flask refuses it)."""
    _serves_every_db_route(switched, redis_client)


def _serves_every_db_route(p: Pair, redis_client: Any) -> None:
    """Every route that reads or writes PostgreSQL; same bodies as the default server."""
    _same_items_and_problems(p)
    _same_streams(p)
    p.same("/fortunes")
    p.same("/health")
    assert set(json_body(p.switched.get("/db"))) == {"id", "randomNumber"}
    assert len(json_body(p.switched.get("/queries?queries=4"))) == 4
    assert len(json_body(p.switched.get("/updates?queries=3"))) == 3
    item_id = _fresh_item(redis_client)
    miss, hit = (p.switched.raw("GET", f"/cached/items/{item_id}", headers=IDENTITY) for _ in "ab")
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    created = p.switched.post(
        "/items", json={"name": "switch", "category": "toys", "price": 1.5}, allow={201}
    )
    assert created.status_code == 201
    p.same(created.headers["location"])


# -- LAB_CACHE ---------------------------------------------------------------------------------


@by_switch(switch("LAB_CACHE", "none"))
def test_no_cache_reads_postgres_every_time(switched: Pair, redis_client) -> None:
    """SPEC §6: BYPASS every time, Redis untouched; same body, ETag and Cache-Control, and
    If-None-Match still answers 304."""
    p = switched
    item_id = _fresh_item(redis_client)
    path = f"/cached/items/{item_id}"
    first, second = (p.switched.raw("GET", path, headers=IDENTITY) for _ in "ab")
    assert first.headers["x-cache"] == second.headers["x-cache"] == "BYPASS"
    assert redis_client.exists(f"lab:item:{item_id}") == 0
    want = p.default.raw("GET", path, headers=IDENTITY)
    assert first.body == second.body == want.body
    assert first.headers["etag"] == want.headers["etag"]
    assert first.headers["cache-control"] == want.headers["cache-control"]
    not_modified = p.switched.raw(
        "GET", path, headers={**IDENTITY, "If-None-Match": want.headers["etag"]}
    )
    assert not_modified.status_code == 304 and not_modified.wire == b""
    assert not_modified.headers["x-cache"] == "BYPASS"
    p.same("/cached/items/0", status=404)
    p.same("/cached/items/x", status=422)


@by_switch(switch("LAB_CACHE", "local"))
def test_local_cache_answers_before_redis(switched: Pair, redis_client) -> None:
    """SPEC §6: MISS fills Redis and the worker's own cache; the next request is a HIT even
    when Redis no longer holds the entry (it never asked); same body and ETag."""
    p = switched
    item_id = _fresh_item(redis_client)
    path = f"/cached/items/{item_id}"
    miss = p.switched.raw("GET", path, headers=IDENTITY)
    assert miss.headers["x-cache"] == "MISS"
    assert redis_client.get(f"lab:item:{item_id}") == miss.body
    redis_client.delete(f"lab:item:{item_id}")
    hit = p.switched.raw("GET", path, headers=IDENTITY)
    assert hit.headers["x-cache"] == "HIT" and hit.body == miss.body
    assert redis_client.exists(f"lab:item:{item_id}") == 0, "a local hit asked Redis"
    want = p.default.raw("GET", path, headers=IDENTITY)
    assert hit.body == want.body and hit.headers["etag"] == want.headers["etag"]
    # An entry found in Redis is kept locally too.
    other = _fresh_item(redis_client)
    p.default.get(f"/cached/items/{other}")  # fills Redis
    from_redis = p.switched.raw("GET", f"/cached/items/{other}", headers=IDENTITY)
    assert from_redis.headers["x-cache"] == "HIT"
    redis_client.delete(f"lab:item:{other}")
    assert p.switched.raw("GET", f"/cached/items/{other}").headers["x-cache"] == "HIT"
    etag = hit.headers["etag"]
    not_modified = p.switched.raw("GET", path, headers={**IDENTITY, "If-None-Match": etag})
    assert not_modified.status_code == 304
    p.same("/cached/items/0", status=404)


# -- LAB_HTTP_CACHE ----------------------------------------------------------------------------


@by_switch(switch("LAB_HTTP_CACHE", "off"))
def test_without_validators(switched: Pair, redis_client) -> None:
    """SPEC §6: no ETag, If-None-Match ignored (always 200 with the body); Cache-Control and
    X-Cache as before."""
    p = switched
    item_id = _fresh_item(redis_client)
    path = f"/cached/items/{item_id}"
    want = p.default.raw("GET", path, headers=IDENTITY)
    for condition in (want.headers["etag"], "*"):
        got = p.switched.raw("GET", path, headers={**IDENTITY, "If-None-Match": condition})
        assert got.status_code == 200 and got.body == want.body
        assert "etag" not in got.headers
        assert got.headers["cache-control"] == want.headers["cache-control"]
        assert got.headers["x-cache"] == "HIT"


# -- LAB_BATCH_QUERY ---------------------------------------------------------------------------


@by_switch(switch("LAB_BATCH_QUERY", "n_plus_one"))
def test_n_plus_one_batch_is_byte_identical(switched: Pair) -> None:
    p = switched
    ids = [secrets.randbelow(100_000) + 1 for _ in range(100)]
    for query in (
        "1",
        "5,3,5,99999,0,100000,-4",
        ",".join(map(str, ids)),
        "2147483647",
    ):
        p.same(f"/items/batch?ids={query}")
    for query in ("", "x", ",".join(["1"] * 101)):
        p.same(f"/items/batch?ids={query}", status=422)


# -- LAB_PAGINATION ----------------------------------------------------------------------------


@by_switch(switch("LAB_PAGINATION", "offset"))
def test_offset_pages(switched: Pair) -> None:
    """SPEC §6: on the contiguous seed ids, a page read by OFFSET is the keyset page, ``next``
    included; within a category ``after`` counts rows of the category."""
    p = switched
    for query in ("", "?limit=1", "?limit=100&after=500", "?after=99000", "?limit=3&after=99990"):
        p.same(f"/items{query}")
    for query in ("?limit=0", "?after=-1", "?category=cars"):
        p.same(f"/items{query}", status=422)
    # A category: the first page holds the keyset page's items; then `after` is a row count.
    first = json_body(p.switched.get("/items?limit=5&category=music"))
    keyset_first = json_body(p.default.get("/items?limit=5&category=music"))
    assert first["items"] == keyset_first["items"]
    assert first["next"] == "/items?limit=5&after=5&category=music"
    second = json_body(p.switched.get(first["next"]))
    keyset_second = json_body(
        p.default.get(json_body(p.default.get("/items?limit=5&category=music"))["next"])
    )
    assert second["items"] == keyset_second["items"]
    assert second["next"] == "/items?limit=5&after=10&category=music"


# -- LAB_STREAMING -----------------------------------------------------------------------------


@by_switch(switch("LAB_STREAMING", "off"))
def test_unstreamed_body_is_the_stream(switched: Pair) -> None:
    """SPEC §6: the whole body at once, with Content-Length, the same bytes in each format."""
    p = switched
    for media_type in STREAM_TYPES:
        for count in (1, 1200):
            got = p.same(f"/stream/items?count={count}", Accept=media_type)
            assert int(got.headers["content-length"]) == len(got.wire)
            assert "chunked" not in got.headers.get("transfer-encoding", "")
            assert "Accept" in got.headers["vary"]
    p.same("/stream/items?count=0", status=422)
    p.same("/stream/items", status=406, Accept="image/png")
    # Compressed as any complete body is (SPEC §2.3); the decoded bytes are the stream's.
    want, got = p.raw("/stream/items?count=300", **{"Accept-Encoding": "gzip"})
    assert got.headers["content-encoding"] == "gzip" and got.body == want.body


# -- LAB_UPSTREAM_CLIENT -----------------------------------------------------------------------


@by_switch(switch("LAB_UPSTREAM_CLIENT", "blocking"))
def test_blocking_upstream_client(switched: Pair) -> None:
    """SPEC §6: the same body shape, the calls one after another (so at least n x delay)."""
    p = switched
    n, delay_ms = 4, 50
    body = json_body(p.switched.get(f"/aggregate?n={n}&delay_ms={delay_ms}"))
    want = json_body(p.default.get(f"/aggregate?n={n}&delay_ms={delay_ms}"))
    assert (
        body["results"]
        == want["results"]
        == [{"i": i, "delay_ms": delay_ms, "value": i * i} for i in range(n)]
    )
    assert body["errors"] == [] and set(body) == set(want)
    assert body["elapsed_ms"] >= n * delay_ms, body["elapsed_ms"]
    p.same("/aggregate?n=0", status=422)


@by_switch(switch("LAB_UPSTREAM_CLIENT", "blocking"))
def test_blocking_upstream_client_stalls_the_worker(switched: Pair) -> None:
    """The point of the experiment: while a blocking fan-out runs (4 x 250 ms), the worker's
    event loop answers nothing else, so a /json sent meanwhile waits for it to finish."""
    url = switched.switched.base_url
    with ThreadPoolExecutor(1) as pool, LabClient(url) as c:
        fan_out = pool.submit(c.get, "/aggregate?n=4&delay_ms=250")
        slowest = 0.0
        with LabClient(url) as other:
            while not fan_out.done():  # bounded: the fan-out ends after about 1 s
                started = time.monotonic()
                other.get("/json")
                slowest = max(slowest, time.monotonic() - started)
        assert fan_out.result().status_code == 200
    assert slowest >= 0.5, f"/json never waited for the blocking fan-out ({slowest:.3f} s)"


# -- LAB_HANDLERS ------------------------------------------------------------------------------


@by_switch(switch("LAB_HANDLERS", "sync"))
def test_sync_handlers(switched: Pair) -> None:
    """SPEC §6 (FastAPI): ``def`` routes on the sync twin answer as the async ones."""
    p = switched
    for path in ("/items/1", "/items/99999"):
        p.same(path)
    for path, status in (("/items/0", 404), ("/items/x", 422), ("/aggregate?n=51", 422)):
        p.same(path, status=status)
    world = json_body(p.switched.get("/db"))
    assert set(world) == {"id", "randomNumber"} and 1 <= world["id"] <= 10_000
    n, delay_ms = 5, 100
    body = json_body(p.switched.get(f"/aggregate?n={n}&delay_ms={delay_ms}"))
    assert body["results"] == [{"i": i, "delay_ms": delay_ms, "value": i * i} for i in range(n)]
    assert body["elapsed_ms"] < n * delay_ms, "the sync twin's calls are concurrent too"


# -- LAB_LIMITER -------------------------------------------------------------------------------


@by_switch(switch("LAB_LIMITER", "off"))
def test_limiter_off(switched: Pair, server: Server) -> None:
    """SPEC §6: 200 ``{"status": "ok"}`` past the limit (2/60s here), no RateLimit headers."""
    with LabClient(switched.switched.base_url, local_address=fresh_loopback()) as c:
        for _ in range(4):
            resp = c.get("/limited")
            assert resp.status_code == 200 and json_body(resp) == {"status": "ok"}
            assert not [h for h in resp.headers if h.lower().startswith(("ratelimit", "retry"))]


# -- LAB_MAX_INFLIGHT --------------------------------------------------------------------------


@by_switch(switch("LAB_MAX_INFLIGHT", "1"))
def test_in_flight_limit_sheds_the_excess(switched: Pair) -> None:
    """SPEC §6: while one request is in flight (a 3 s fan-out) a second is refused at once,
    with the 503 ``overloaded`` problem and ``Retry-After: 1``, but ``/health`` is answered; the
    one in flight is answered in full, and then the worker admits again."""
    url = switched.switched.base_url
    with ThreadPoolExecutor(1) as pool, LabClient(url) as c, LabClient(url) as other:
        fan_out = pool.submit(c.get, "/aggregate?n=2&delay_ms=3000")
        shed = None
        for _ in range(2000):  # bounded; /json is refused from the fan-out's admission on
            if fan_out.done():
                break
            resp = other.get("/json", allow={503})
            if resp.status_code == 503:
                shed = resp
                break
        assert shed is not None, "no request was refused while the fan-out was in flight"
        assert_problem(shed, 503, "overloaded")
        assert shed.headers["retry-after"] == "1"
        assert "app;dur=" in shed.headers["server-timing"]  # the lab's middleware saw it
        health = other.get("/health")
        assert health.status_code == 200 and json_body(health)["status"] == "ok"
        refused_again = other.get("/items/1", allow={503})
        assert not fan_out.done(), "the fan-out ended before the checks ran: nothing shown"
        assert_problem(refused_again, 503, "overloaded")  # any route, not only /json
        body = json_body(fan_out.result())
        assert body["errors"] == [] and len(body["results"]) == 2, body
    with LabClient(url) as after:
        assert json_body(after.get("/json")) == {"message": "Hello, World!"}

"""Bugs in the articles' own code (docs/claims.toml, `bug` claims), each shown on a faithful
transcription of the article's snippet, next to what the lab does instead.

The snippets are copied from the articles in ../shared/seeds/ with only what is needed to
run them: imports, indentation the copy lost, a URL pointed at a local server or a stubbed
``httpx.get`` instead of the internet, the lab's Redis/PostgreSQL instead of localhost.
Where an article reads ``time.time()`` the clock is frozen (``clock``), never waited for.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import json
import logging
import pickle
import time
import tomllib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import redis.asyncio
import yaml
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from psycopg.rows import dict_row

from common import compression, formats, negotiation, ratelimit, sql
from common.aio.service import stream_events
from tests.support.client import TLS
from tests.support.services import Services

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
THIS_MODULE = "tests/unit/test_article_code.py"


class Clock:
    """A frozen ``time.time``: the article's code sees ``now`` until a test moves it."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.25

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    frozen = Clock()
    monkeypatch.setattr(time, "time", frozen)
    return frozen


def asgi_client(app: Any) -> httpx.AsyncClient:
    """An in-process client; app exceptions become 500s, as a server would answer."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", verify=TLS)


# ============================================================ 000 FastAPI scaling guide

# -- "FastAPI's dependency caching" ----------------------------------------------------------


def test_fastapi_dependency_cache_is_per_request() -> None:
    """FastAPI's dependency cache (``Depends(use_cache=True)``, the default) only stops a
    dependency running twice *within one request*: every request calls it again."""
    calls = 0

    def expensive_config() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"call": calls}

    app = FastAPI()

    @app.get("/data")
    async def get_data(
        a: dict = Depends(expensive_config),  # noqa: B008 (FastAPI's idiom)
        b: dict = Depends(expensive_config),  # noqa: B008
    ) -> dict[str, Any]:
        return {"a": a, "b": b}

    async def scenario() -> list[dict[str, Any]]:
        async with asgi_client(app) as client:
            return [(await client.get("/data")).json() for _ in range(2)]

    first, second = asyncio.run(scenario())
    assert first["a"] == first["b"] == {"call": 1}  # cached within the request...
    assert second["a"] == second["b"] == {"call": 2}  # ...and computed again for the next
    assert calls == 2


# -- "Pagination": LIMIT/OFFSET built with an f-string ----------------------------------------


class ArticleDatabase:
    """The ``databases``-style ``db`` 000's snippet awaits (``db.fetch_all(query)``), over
    one psycopg connection (its temporary ``items`` table shadows the lab's)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    async def fetch_all(self, query: str) -> list[dict[str, Any]]:
        return self.conn.execute(query).fetchall()  # type: ignore[arg-type]


def test_offset_pagination_example_is_unordered_and_unbounded(services: Services) -> None:
    """No ORDER BY: PostgreSQL returns heap order, and an UPDATE writes a new row version
    at the end, so walking the pages around an update repeats one row and skips another.
    No bounds: limit=-1 is a database error (500), limit=10**9 returns the whole table.
    The f-string is safe only because FastAPI coerces both parameters to ``int``."""
    with psycopg.connect(services.database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("CREATE TEMPORARY TABLE items (id int, name text)")
        conn.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 30) g")
        db = ArticleDatabase(conn)
        app = FastAPI()

        @app.get("/items")
        async def get_items(limit: int = 10, offset: int = 0) -> Any:
            return await db.fetch_all(f"SELECT * FROM items LIMIT {limit} OFFSET {offset}")

        async def scenario() -> dict[str, Any]:
            async with asgi_client(app) as client:

                async def page(offset: int, limit: int = 10) -> list[int]:
                    r = await client.get("/items", params={"limit": limit, "offset": offset})
                    assert r.status_code == 200
                    return [row["id"] for row in r.json()]

                walked = await page(0)
                conn.execute("UPDATE items SET name = name || ' (edited)' WHERE id = 1")
                walked += await page(10) + await page(20)
                return {
                    "walked": walked,
                    "negative": (await client.get("/items?limit=-1")).status_code,
                    "huge": len(await page(0, limit=10**9)),
                    "injection": (await client.get("/items?limit=1 OR 1=1")).status_code,
                }

        try:
            seen = asyncio.run(scenario())
            walked = seen["walked"]
            assert len(walked) == 30
            assert walked.count(1) == 2 and 11 not in walked  # one row twice, one never
            assert seen["negative"] == 500  # LIMIT must not be negative
            assert seen["huge"] == 30  # no upper bound: the whole table
            assert seen["injection"] == 422  # only the int annotation stops this

            # The lab orders by the key and binds its parameters (common.sql), so the same
            # walk around the same kind of update is a partition of the table.
            assert "ORDER BY id LIMIT $2 OFFSET $1" in sql.ITEMS_PAGE_OFFSET
            ordered = "SELECT id FROM items ORDER BY id LIMIT %s OFFSET %s"
            ids = [r["id"] for r in conn.execute(ordered, (10, 0))]
            conn.execute("UPDATE items SET name = name || '!' WHERE id = 2")
            ids += [r["id"] for off in (10, 20) for r in conn.execute(ordered, (10, off))]
            assert ids == list(range(1, 31))
        finally:
            conn.execute("DROP TABLE IF EXISTS pg_temp.items")


# -- "Implement Rate Limiting or Throttling" (in-process) ------------------------------------

SNIPPET_000_RATE_LIMIT = """
from collections import defaultdict
import time
request_counts = defaultdict(list)
def rate_limit(user_id, limit, window):
    now = time.time()
    request_counts[user_id] = [t for t in request_counts[user_id] if t > now - window]
    if len(request_counts[user_id]) >= limit:
        return False
    request_counts[user_id].append(now)
    return True
"""


def article_worker_000() -> dict[str, Any]:
    """One worker process's import of 000's rate-limit snippet (its own module globals)."""
    namespace: dict[str, Any] = {"__name__": "article_000_rate_limit"}
    exec(compile(SNIPPET_000_RATE_LIMIT, "000-rate-limit", "exec"), namespace)
    return namespace


def test_inprocess_rate_limit_is_per_process_and_never_forgets(clock: Clock) -> None:
    """With two workers (the article's own ``--workers`` advice) each has its own
    ``request_counts``: a client spread over both gets 2 x the limit. A user who stops
    calling keeps a key for ever. The lab counts in Redis, shared by every worker."""
    workers = [article_worker_000(), article_worker_000()]
    admitted = 0
    for i in range(20):  # the kernel spreads connections over the workers
        admitted += workers[i % 2]["rate_limit"]("client", 5, 60)
        clock.now += 0.1
    assert admitted == 10  # twice the limit of 5 per minute

    for n in range(100):
        workers[0]["rate_limit"](f"passer-by-{n}", 5, 60)
    clock.now += 3600  # long after every window has passed
    counts = workers[0]["request_counts"]
    assert "client" in counts and len(counts) == 101  # nothing is ever removed


def test_the_labs_counter_admits_exactly_the_limit(redis_client: Any) -> None:
    """The lab's counter (common.ratelimit's Lua script) lives in Redis: two workers, each
    with its own registration of the script, admit exactly the limit between them."""
    key = f"lab:test:lab-rl:{time.time_ns()}"
    workers = [redis_client.register_script(ratelimit.LUA_SOURCE) for _ in range(2)]
    try:
        decisions = [
            ratelimit.decide(*workers[i % 2](keys=[key], args=[5, 3_600_000]), 5) for i in range(50)
        ]
        assert sum(d.allowed for d in decisions) == 5
        assert min(d.remaining for d in decisions) == 0
    finally:
        redis_client.delete(key)


# ============================================================ 001 deore

SNIPPET_001_GATHER = """
import asyncio
async def fetch_data(session, url):
    async with session.get(url) as response:
        return await response.json()
async def main():
    async with aiohttp.ClientSession() as session:
        tasks = [fetch_data(session, f'http://example.com/{i}') for i in range(100)]
        results = await asyncio.gather(*tasks)
        print(results)
asyncio.run(main())
"""


def test_gather_example_lacks_aiohttp_import() -> None:
    """001's asyncio example imports asyncio but not aiohttp: main() dies with NameError
    before any request is made (so no request leaves the machine here)."""
    namespace: dict[str, Any] = {"__name__": "article_001_gather"}
    with pytest.raises(NameError, match="name 'aiohttp' is not defined"):
        exec(compile(SNIPPET_001_GATHER, "001-gather", "exec"), namespace)


def test_sqlalchemy2_rejects_a_plain_string_statement(tmp_path: Path) -> None:
    """001's ``connection.execute("SELECT * FROM data LIMIT 1000")`` fails on SQLAlchemy
    2.x (ObjectNotExecutableError); the statement must be wrapped in ``text()``."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ObjectNotExecutableError

    engine = create_engine(f"sqlite:///{tmp_path / 'example.db'}")

    def get_data() -> Any:
        with engine.connect() as connection:
            result = connection.execute("SELECT * FROM data LIMIT 1000")  # type: ignore[call-overload]
            return result.fetchall()

    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE data (id INTEGER)"))
            connection.execute(text("INSERT INTO data VALUES (1), (2)"))
        with pytest.raises(ObjectNotExecutableError):
            get_data()
        with engine.connect() as connection:  # the 2.x spelling
            assert connection.execute(text("SELECT * FROM data LIMIT 1000")).fetchall() == [
                (1,),
                (2,),
            ]
    finally:
        engine.dispose()


def test_redis_set_of_a_dict_raises(redis_client: Any) -> None:
    """001's ``get_user_profile``: redis-py refuses a dict value (DataError), so the first
    miss raises instead of caching; a hit would return bytes, not the dict a miss returns."""
    r = redis_client
    user_id = f"lab-test-{time.time_ns()}"

    # Example: caching API response
    def get_user_profile(user_id: str) -> Any:
        cache_key = f"user_profile:{user_id}"
        cached_profile = r.get(cache_key)
        if cached_profile:
            return cached_profile
        # Simulate a database call
        profile = {"id": user_id, "name": "John Doe"}
        # Cache for future requests
        r.set(cache_key, profile, ex=3600)  # Cache for 1 hour
        return profile

    key = f"user_profile:{user_id}"
    try:
        with pytest.raises(redis.DataError, match="dict"):
            get_user_profile(user_id)
        assert r.get(key) is None  # nothing was cached
        # Had it stored a string, the hit would hand back bytes, not the miss's dict:
        r.set(key, json.dumps({"id": user_id, "name": "John Doe"}), ex=60)
        assert isinstance(get_user_profile(user_id), bytes)
    finally:
        r.delete(key)


# ============================================================ 002 greeden


class CountingHTTPServer:
    """A local HTTP/1.1 server that answers every request with one JSON body (keep-alive)
    and counts the TCP connections it accepts."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                writer.write(head % len(self.body) + self.body)
                await writer.drain()
        finally:
            writer.close()


def test_client_per_request_opens_a_connection_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """002's /weather handler builds an AsyncClient per request: N calls open N TCP
    connections (for https, N handshakes). One client created once reuses one."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    server = CountingHTTPServer(b'{"city": "Madrid", "temp": 21}')

    async def scenario() -> tuple[int, int]:
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"  # was https://api.example.com
        app = FastAPI()

        @app.get("/weather")
        async def get_weather(city: str) -> Any:
            async with httpx.AsyncClient(timeout=2.0, verify=TLS) as client:
                r = await client.get(f"{base}/weather?city={city}")
            return r.json()

        async with srv:
            for _ in range(5):
                assert (await get_weather("Madrid"))["temp"] == 21
            per_request = server.connections

            server.connections = 0
            async with httpx.AsyncClient(timeout=2.0, verify=TLS) as shared:  # once, at start-up
                for _ in range(5):
                    r = await shared.get(f"{base}/weather", params={"city": "Madrid"})
                    assert r.json()["temp"] == 21
            return per_request, server.connections

    assert asyncio.run(scenario()) == (5, 1)


def test_lru_cache_remote_config_never_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """``@lru_cache`` on 002's ``fetch_remote_config`` keeps the first answer for the life
    of the process: a change upstream is never seen (no TTL) until ``cache_clear()`` or a
    restart, and every caller shares (and can mutate) the one cached dict. The lab's
    caches have TTLs (LAB_CACHE_TTL)."""
    remote = {"version": 1}
    fetches: list[str] = []

    def fake_get(url: str, **kwargs: Any) -> httpx.Response:  # the network, stubbed
        fetches.append(url)
        return httpx.Response(200, json=remote)

    monkeypatch.setattr(httpx, "get", fake_get)

    @lru_cache(maxsize=128)
    def fetch_remote_config() -> Any:
        r = httpx.get("https://config.example.com/app-config")
        return r.json()

    assert fetch_remote_config()["version"] == 1
    remote["version"] = 2
    assert [fetch_remote_config()["version"] for _ in range(3)] == [1, 1, 1]  # stale
    assert len(fetches) == 1
    fetch_remote_config()["version"] = 99  # one caller's edit...
    assert fetch_remote_config()["version"] == 99  # ...is every caller's
    fetch_remote_config.cache_clear()
    assert fetch_remote_config()["version"] == 2


# ============================================================ 003 Bharadwaj

# -- "Response Compression and Content Optimization" -----------------------------------------


def article_compression_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(GZipMiddleware, minimum_size=1000)

    class CompressionUtility:
        @staticmethod
        def compress_large_response(data: dict) -> bytes:
            json_data = json.dumps(data).encode("utf-8")
            return gzip.compress(json_data)

        @staticmethod
        def create_optimized_response(data: dict, compress_threshold: int = 10000) -> JSONResponse:
            json_str = json.dumps(data)

            if len(json_str.encode("utf-8")) > compress_threshold:
                return JSONResponse(content=data, headers={"Content-Encoding": "gzip"})
            return JSONResponse(content=data)

    def large_data() -> dict[str, Any]:
        return {
            "records": [
                {
                    "id": i,
                    "name": f"Record {i}",
                    "description": f"Detailed description for record {i}" * 10,
                }
                for i in range(1000)
            ],
            "metadata": {"total": 1000, "generated_at": time.time()},
        }

    @app.get("/large-dataset")
    async def get_large_dataset() -> Any:
        # Simulate large dataset
        large_data_ = large_data()
        return CompressionUtility.create_optimized_response(large_data_)

    @app.get("/large-dataset-fixed")  # not the article's: the same data, header left out
    async def get_large_dataset_fixed() -> Any:
        return JSONResponse(content=large_data())

    return app


def test_content_encoding_gzip_on_an_uncompressed_body() -> None:
    """003's /large-dataset says ``Content-Encoding: gzip`` over a plain JSON body, whatever
    the client accepts; GZipMiddleware leaves a response that already declares an encoding
    alone, so the body the middleware would have compressed goes out uncompressed."""
    app = article_compression_app()

    async def raw(path: str, accept_encoding: str) -> tuple[httpx.Headers, bytes]:
        async with (
            asgi_client(app) as client,
            client.stream("GET", path, headers={"Accept-Encoding": accept_encoding}) as r,
        ):
            return r.headers, b"".join([chunk async for chunk in r.aiter_raw()])

    async def decoded(path: str) -> Any:
        async with asgi_client(app) as client:
            return (await client.get(path, headers={"Accept-Encoding": "gzip"})).json()

    for accept_encoding in ("gzip", "identity"):
        headers, body = asyncio.run(raw("/large-dataset", accept_encoding))
        assert headers["content-encoding"] == "gzip"
        assert json.loads(body)["metadata"]["total"] == 1000  # plain JSON on the wire
        with pytest.raises(gzip.BadGzipFile):
            gzip.decompress(body)
    with pytest.raises(httpx.DecodingError):
        asyncio.run(decoded("/large-dataset"))

    # Without the false header the middleware compresses it (as the lab's does, SPEC §2.3).
    headers, body = asyncio.run(raw("/large-dataset-fixed", "gzip"))
    assert headers["content-encoding"] == "gzip"
    assert len(body) < len(gzip.decompress(body)) / 5
    assert asyncio.run(decoded("/large-dataset-fixed"))["metadata"]["total"] == 1000


# -- "Intelligent Caching Strategies": the two-level CacheManager ------------------------------


class ArticleCacheManager:
    def __init__(self, redis_url: str = "redis://localhost:6379"):
        self.redis_client = redis.asyncio.from_url(redis_url)
        self.local_cache: dict[str, Any] = {}
        self.local_cache_size = 1000

    def generate_cache_key(self, prefix: str, *args: Any, **kwargs: Any) -> str:
        key_data = f"{prefix}:{args}:{sorted(kwargs.items())}"
        return hashlib.md5(key_data.encode()).hexdigest()

    async def get_from_cache(self, key: str) -> Any | None:
        # Check local cache first
        if key in self.local_cache:
            return self.local_cache[key]

        # Check Redis cache
        cached_data = await self.redis_client.get(key)
        if cached_data:
            data = pickle.loads(cached_data)
            # Store in local cache for faster access
            if len(self.local_cache) < self.local_cache_size:
                self.local_cache[key] = data
            return data

        return None

    async def set_cache(self, key: str, value: Any, expire: int = 3600) -> None:
        # Store in local cache
        if len(self.local_cache) < self.local_cache_size:
            self.local_cache[key] = value

        # Store in Redis with expiration
        await self.redis_client.set(key, pickle.dumps(value), ex=expire)

    def cache_result(self, prefix: str, expire: int = 3600) -> Callable[..., Any]:
        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(func)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                cache_key = self.generate_cache_key(prefix, *args, **kwargs)

                # Try to get from cache
                cached_result = await self.get_from_cache(cache_key)
                if cached_result is not None:
                    return cached_result

                # Execute function and cache result
                result = await func(*args, **kwargs)
                await self.set_cache(cache_key, result, expire)
                return result

            return wrapper

        return decorator


def test_cachemanager_local_layer_ignores_ttl(services: Services, redis_client: Any) -> None:
    """``expire`` reaches Redis only: once Redis has expired the key, the worker that set it
    still serves its local copy (for ever), while another worker sees a miss."""

    async def scenario() -> tuple[Any, Any, int]:
        worker, other = (
            ArticleCacheManager(services.redis_url),
            ArticleCacheManager(services.redis_url),
        )
        key = worker.generate_cache_key(f"lab-test-ttl-{time.time_ns()}", 7)
        try:
            await worker.set_cache(key, {"price": 10}, expire=1)
            ttl = await worker.redis_client.ttl(key)
            await worker.redis_client.delete(key)  # what Redis does when the second is up
            return await worker.get_from_cache(key), await other.get_from_cache(key), ttl
        finally:
            await worker.redis_client.delete(key)
            await worker.redis_client.aclose()
            await other.redis_client.aclose()

    local, elsewhere, ttl = asyncio.run(scenario())
    assert ttl == 1  # Redis was told
    assert local == {"price": 10}  # the local layer was not: stale, with no end
    assert elsewhere is None


def test_cachemanager_local_layer_stops_caching_when_full(services: Services) -> None:
    """After ``local_cache_size`` (1000) keys the local layer accepts nothing new and evicts
    nothing: a later key, however hot, is read from Redis on every hit."""

    async def scenario() -> None:
        cm = ArticleCacheManager(services.redis_url)
        prefix = f"lab-test-full-{time.time_ns()}"
        keys = [cm.generate_cache_key(prefix, i) for i in range(1001)]
        redis_reads = 0
        real_get = cm.redis_client.get

        async def counting_get(key: str) -> Any:
            nonlocal redis_reads
            redis_reads += 1
            return await real_get(key)

        cm.redis_client.get = counting_get  # type: ignore[method-assign]
        try:
            for i, key in enumerate(keys):
                await cm.set_cache(key, i, expire=60)
            hot = keys[-1]
            assert hot not in cm.local_cache and len(cm.local_cache) == 1000
            assert keys[0] in cm.local_cache  # the first key ever seen stays, cold or not
            for _ in range(10):
                assert await cm.get_from_cache(hot) == 1000
            assert redis_reads == 10  # every hit on the hot key went to Redis
        finally:
            await cm.redis_client.delete(*keys)
            await cm.redis_client.aclose()

    asyncio.run(scenario())


# -- "Rate Limiting and Request Throttling": the sliding window --------------------------------


class ArticleRateLimiter:
    def __init__(self, redis_url: str = "redis://localhost:6379"):
        self.redis_client = redis.asyncio.from_url(redis_url)

    async def is_rate_limited(
        self, identifier: str, limit: int, window: int, burst_limit: int | None = None
    ) -> dict[str, Any]:
        current_time = int(time.time())
        window_start = current_time - window

        # Use Redis pipeline for atomic operations
        pipe = self.redis_client.pipeline()

        # Remove old entries
        pipe.zremrangebyscore(identifier, 0, window_start)

        # Count current requests
        pipe.zcard(identifier)

        # Add current request
        pipe.zadd(identifier, {str(current_time): current_time})

        # Set expiration
        pipe.expire(identifier, window + 1)

        results = await pipe.execute()
        current_requests = results[1]

        # Check burst limit if specified
        if burst_limit and current_requests > burst_limit:
            return {
                "allowed": False,
                "limit": limit,
                "remaining": 0,
                "reset_time": current_time + window,
                "reason": "Burst limit exceeded",
            }

        # Check regular limit
        if current_requests > limit:
            return {
                "allowed": False,
                "limit": limit,
                "remaining": 0,
                "reset_time": current_time + window,
                "reason": "Rate limit exceeded",
            }

        return {
            "allowed": True,
            "limit": limit,
            "remaining": limit - current_requests,
            "reset_time": current_time + window,
        }


def test_sliding_window_counts_seconds_not_requests(services: Services, clock: Clock) -> None:
    """The ZADD member is ``int(time.time())``: all requests of one second are one member,
    so 3 x the limit within one second all pass and the set holds one entry. Spread over
    distinct seconds the same limiter does refuse: it counts seconds with traffic."""
    identifier = f"lab:test:article-rl:{time.time_ns()}"

    async def scenario() -> tuple[list[bool], int, list[bool]]:
        limiter = ArticleRateLimiter(services.redis_url)
        try:
            burst = [
                (await limiter.is_rate_limited(identifier, 5, 3600))["allowed"] for _ in range(15)
            ]
            members = await limiter.redis_client.zcard(identifier)
            spread = []
            for _ in range(8):
                clock.now += 1
                spread.append((await limiter.is_rate_limited(identifier, 5, 3600))["allowed"])
            return burst, members, spread
        finally:
            await limiter.redis_client.delete(identifier)
            await limiter.redis_client.aclose()

    burst, members, spread = asyncio.run(scenario())
    assert all(burst) and len(burst) == 15  # limit 5, within one (frozen) second
    assert members == 1
    # Seconds 2..6 pass (1 + 5 members: `>` admits limit + 1), then it refuses.
    assert spread == [True] * 5 + [False] * 3


def test_sliding_window_burst_limit_caps_the_hour(services: Services, clock: Clock) -> None:
    """``burst_limit=10`` ("max 10 requests per minute") is compared with the whole hour's
    count: one request a second, the 12th is refused (the 11th admitted: off by one), and
    a minute later the client is still refused, so 100 per hour is unreachable."""
    identifier = f"lab:test:article-burst:{time.time_ns()}"

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        limiter = ArticleRateLimiter(services.redis_url)
        try:
            seen = []
            for _ in range(12):
                seen.append(await limiter.is_rate_limited(identifier, 100, 3600, burst_limit=10))
                clock.now += 1
            clock.now += 600  # ten minutes later, well inside the hour
            later = await limiter.is_rate_limited(identifier, 100, 3600, burst_limit=10)
            return seen, later
        finally:
            await limiter.redis_client.delete(identifier)
            await limiter.redis_client.aclose()

    seen, later = asyncio.run(scenario())
    assert [d["allowed"] for d in seen] == [True] * 11 + [False]
    assert seen[-1]["reason"] == "Burst limit exceeded"
    assert later["allowed"] is False and later["reason"] == "Burst limit exceeded"


def article_rate_limited_app(redis_url: str) -> tuple[FastAPI, ArticleRateLimiter]:
    app = FastAPI()
    rate_limiter = ArticleRateLimiter(redis_url)

    async def rate_limit_dependency(request: Request) -> dict[str, Any]:
        assert request.client is not None
        client_ip = request.client.host
        user_agent = request.headers.get("user-agent", "unknown")
        identifier = f"rate_limit:{client_ip}:{hashlib.md5(user_agent.encode()).hexdigest()}"

        rate_check = await rate_limiter.is_rate_limited(
            identifier=identifier,
            limit=100,  # 100 requests
            window=3600,  # per hour
            burst_limit=10,  # max 10 requests per minute burst
        )

        if not rate_check["allowed"]:
            raise HTTPException(
                status_code=429,
                detail=f"Rate limit exceeded: {rate_check['reason']}",
                headers={
                    "X-Rate-Limit": str(rate_check["limit"]),
                    "X-Rate-Remaining": str(rate_check["remaining"]),
                    "X-Rate-Reset": str(rate_check["reset_time"]),
                },
            )

        return rate_check

    @app.get("/protected-endpoint")
    async def protected_endpoint(rate_info: dict = Depends(rate_limit_dependency)) -> Any:  # noqa: B008
        return {"message": "Request successful", "rate_info": rate_info}

    return app, rate_limiter


def test_sliding_window_identifier_includes_user_agent(
    services: Services, redis_client: Any, clock: Clock
) -> None:
    """The key hashes the User-Agent, which the client chooses: once refused, the same IP
    with a new User-Agent starts a fresh, empty budget. The lab keys on the peer address
    only (common.ratelimit.client_key takes no header but X-Forwarded-For from trusted
    proxies)."""
    app, limiter = article_rate_limited_app(services.redis_url)
    agents = [f"lab-test-agent/{time.time_ns()}", f"lab-test-agent/{time.time_ns()}-2"]

    async def scenario() -> list[int]:
        statuses = []
        try:
            async with asgi_client(app) as client:
                for _ in range(12):
                    r = await client.get("/protected-endpoint", headers={"User-Agent": agents[0]})
                    statuses.append(r.status_code)
                    clock.now += 1
                r = await client.get("/protected-endpoint", headers={"User-Agent": agents[1]})
                statuses.append(r.status_code)
            return statuses
        finally:
            await limiter.redis_client.aclose()

    try:
        statuses = asyncio.run(scenario())
    finally:
        for agent in agents:
            digest = hashlib.md5(agent.encode()).hexdigest()
            redis_client.delete(f"rate_limit:127.0.0.1:{digest}")
    assert statuses[11] == 429  # refused...
    assert statuses[12] == 200  # ...until it changes its User-Agent


# -- "Streaming Responses for Large Data" ------------------------------------------------------


class ArticleDataStreamer:
    def __init__(self) -> None:
        self.chunk_size = 1024

    async def stream_json_array(self, data_generator: AsyncGenerator) -> AsyncGenerator[str, None]:
        yield "["
        first_item = True

        async for item in data_generator:
            if not first_item:
                yield ","
            else:
                first_item = False

            yield json.dumps(item)

        yield "]"

    async def stream_csv_data(self, data_generator: AsyncGenerator) -> AsyncGenerator[str, None]:
        # Stream CSV headers first
        yield "id,name,email,created_at\n"

        async for item in data_generator:
            csv_line = f"{item['id']},{item['name']},{item['email']},{item['created_at']}\n"
            yield csv_line


def test_stream_csv_fields_are_not_quoted() -> None:
    """003's ``stream_csv_data`` joins fields with commas and never quotes: a name holding
    a comma and a quote parses into more fields than the header. The lab's CSV framer
    (common.formats, the csv module) quotes it and the row round-trips."""
    name = 'Doe, "Jr"'

    async def records() -> AsyncGenerator[dict[str, Any], None]:
        yield {"id": 1, "name": name, "email": "jr@example.com", "created_at": "2024-01-01"}

    async def collect() -> str:
        return "".join([line async for line in ArticleDataStreamer().stream_csv_data(records())])

    header, row = csv.reader(io.StringIO(asyncio.run(collect())))
    assert len(header) == 4 and len(row) > len(header)

    fmt = formats.stream_format("text/csv")
    item = {
        "id": 1,
        "name": name,
        "category": "books",
        "price": 9.5,
        "description": "line one\nline two",
        "created_at": "2024-01-01T00:00:00Z",
    }
    lab_header, lab_row = csv.reader(io.StringIO((fmt.head() + fmt.batch([item])).decode()))
    assert len(lab_row) == len(lab_header) == 6
    assert lab_row[1] == name and lab_row[4] == "line one\nline two"


def test_sse_stream_served_as_text_plain() -> None:
    """003's /stream-real-time frames Server-Sent Events (``data: …`` and a blank line) but
    declares text/plain; EventSource accepts only text/event-stream (HTML Living Standard,
    §9.2), and compression middleware treats text/plain as compressible. The lab's event
    stream is text/event-stream and is never compressed."""
    app = FastAPI()

    @app.get("/stream-real-time")
    async def stream_real_time_data() -> Any:
        async def generate_real_time_data() -> AsyncIterator[str]:
            for i in range(100):
                data = {"timestamp": time.time(), "value": i, "status": "active"}
                yield f"data: {json.dumps(data)}\n\n"
                await asyncio.sleep(1)

        return StreamingResponse(generate_real_time_data(), media_type="text/plain")

    async def first_event() -> tuple[str, str]:
        # The handler, called directly: the first event comes before the article's 1 s sleep.
        response = await stream_real_time_data()
        body = response.body_iterator
        try:
            return response.headers["content-type"], await anext(body)  # type: ignore[arg-type]
        finally:
            await body.aclose()  # type: ignore[attr-defined]

    content_type, event = asyncio.run(first_event())
    assert content_type.startswith("text/plain")
    assert event.startswith("data: {") and event.endswith("\n\n")
    assert compression.is_compressible(content_type)

    lab = stream_events(1, 0)
    assert lab.media_type == "text/event-stream"
    assert not compression.is_compressible(lab.media_type)


# -- "Background Task Processing" ---------------------------------------------------------------


def article_task_worker() -> tuple[FastAPI, Any]:
    """One worker's import of 003's background-task module (the email task and the status
    route; the report and bulk tasks store their state the same way): its app and its
    ``task_manager``."""
    app = FastAPI()

    class BackgroundTaskManager:
        def __init__(self) -> None:
            self.task_status: dict[str, str] = {}
            self.completed_tasks: dict[str, dict[str, Any]] = {}

        async def send_email_notification(
            self, recipient: str, subject: str, content: str, task_id: str
        ) -> None:
            try:
                self.task_status[task_id] = "processing"

                # Simulate email sending delay
                await asyncio.sleep(2)

                # Email sending logic would go here
                logging.info(f"Email sent to {recipient}: {subject}")

                self.task_status[task_id] = "completed"
                self.completed_tasks[task_id] = {
                    "recipient": recipient,
                    "subject": subject,
                    "sent_at": time.time(),
                }

            except Exception as e:
                self.task_status[task_id] = "failed"
                logging.error(f"Failed to send email: {e}")

    task_manager = BackgroundTaskManager()

    @app.post("/send-notification")
    async def send_notification(
        recipient: str, subject: str, content: str, background_tasks: BackgroundTasks
    ) -> Any:
        task_id = str(uuid.uuid4())

        background_tasks.add_task(
            task_manager.send_email_notification, recipient, subject, content, task_id
        )

        return {
            "message": "Email notification queued",
            "task_id": task_id,
            "status_url": f"/task-status/{task_id}",
        }

    @app.get("/task-status/{task_id}")
    async def get_task_status(task_id: str) -> Any:
        if task_id not in task_manager.task_status:
            raise HTTPException(status_code=404, detail="Task not found")

        status = task_manager.task_status[task_id]
        response: dict[str, Any] = {"task_id": task_id, "status": status}

        if status == "completed" and task_id in task_manager.completed_tasks:
            response["result"] = task_manager.completed_tasks[task_id]

        return response

    return app, task_manager


def test_task_status_lives_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """With two workers, a task queued on one is a 404 on the other's /task-status; and
    every finished task stays in ``completed_tasks`` for the life of the process."""
    real_sleep = asyncio.sleep

    async def no_wait(delay: float, result: Any = None) -> Any:  # the simulated 2 s email
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    (app_a, manager_a), (app_b, _) = article_task_worker(), article_task_worker()
    params = {"recipient": "a@example.com", "subject": "hi", "content": "hello"}

    async def scenario() -> tuple[int, int, str]:
        async with asgi_client(app_a) as worker_a, asgi_client(app_b) as worker_b:
            queued = (await worker_a.post("/send-notification", params=params)).json()
            on_a = await worker_a.get(queued["status_url"])
            on_b = await worker_b.get(queued["status_url"])
            for _ in range(20):
                await worker_a.post("/send-notification", params=params)
            return on_a.status_code, on_b.status_code, on_a.json()["status"]

    on_a, on_b, status = asyncio.run(scenario())
    assert (on_a, status) == (200, "completed")
    assert on_b == 404  # the other worker never saw it
    assert len(manager_a.completed_tasks) == 21  # nothing is ever pruned


# -- "Content Negotiation and Format Optimization" --------------------------------------------


class ArticleContentNegotiator:
    def __init__(self) -> None:
        self.supported_formats = {
            "application/json": self.format_as_json,
            "application/xml": self.format_as_xml,
            "application/yaml": self.format_as_yaml,
            "text/csv": self.format_as_csv,
            "text/plain": self.format_as_text,
        }

    def get_preferred_format(self, accept_header: str) -> str:
        if not accept_header:
            return "application/json"

        # Parse Accept header and find best match
        accepted_types = [mime_type.strip().split(";")[0] for mime_type in accept_header.split(",")]

        for mime_type in accepted_types:
            if mime_type in self.supported_formats:
                return mime_type
            elif mime_type == "*/*":
                return "application/json"

        return "application/json"

    def format_as_json(self, data: Any) -> tuple[str, str]:
        return json.dumps(data, indent=2), "application/json"

    def format_as_xml(self, data: Any) -> tuple[str, str]:
        root = ET.Element("response")
        self._dict_to_xml(data, root)
        return ET.tostring(root, encoding="unicode"), "application/xml"

    def format_as_yaml(self, data: Any) -> tuple[str, str]:
        return yaml.dump(data, default_flow_style=False), "application/yaml"

    def format_as_csv(self, data: Any) -> tuple[str, str]:
        if isinstance(data, dict) and "items" in data:
            items = data["items"]
        elif isinstance(data, list):
            items = data
        else:
            raise HTTPException(status_code=400, detail="Data not suitable for CSV format")

        if not items:
            return "", "text/csv"

        output = io.StringIO()
        writer = csv.DictWriter(output, fieldnames=items[0].keys())
        writer.writeheader()
        writer.writerows(items)

        return output.getvalue(), "text/csv"

    def format_as_text(self, data: Any) -> tuple[str, str]:
        return str(data), "text/plain"

    def _dict_to_xml(self, data: Any, parent: ET.Element) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                element = ET.SubElement(parent, str(key))
                self._dict_to_xml(value, element)
        elif isinstance(data, list):
            for item in data:
                item_element = ET.SubElement(parent, "item")
                self._dict_to_xml(item, item_element)
        else:
            parent.text = str(data)

    def create_response(self, data: Any, accept_header: str) -> Response:
        preferred_format = self.get_preferred_format(accept_header)
        formatter = self.supported_formats[preferred_format]

        content, content_type = formatter(data)

        return Response(
            content=content, media_type=content_type, headers={"Content-Type": content_type}
        )


def test_accept_parser_ignores_q_values() -> None:
    """003's parser drops every parameter, q included, and takes the first listed type;
    an unsupported Accept gets JSON instead of 406; no ``Vary: Accept``; and the JSON it
    promises mobile clients as compact is indented. The lab's parser (common.negotiation)
    honours q and answers None (406) when nothing is acceptable."""
    negotiator = ArticleContentNegotiator()
    offers = formats.PRODUCT_TYPES
    cases = [
        # (Accept, the article's choice, the lab's choice)
        ("application/xml;q=0.1, application/json", "application/xml", "application/json"),
        ("application/xml;q=0", "application/xml", None),  # q=0: "not acceptable"
        ("text/csv;q=0, application/json", "text/csv", "application/json"),
        ("image/png", "application/json", None),  # nothing acceptable: 406, not JSON
    ]
    for accept, article, lab in cases:
        assert negotiator.get_preferred_format(accept) == article, accept
        assert negotiation.best_media_type(accept, offers) == lab, accept

    response = negotiator.create_response({"items": [{"id": 1}]}, "application/json")
    assert "vary" not in response.headers
    assert b'\n  "items"' in response.body  # indent=2: not compact


# ============================================================ claims.toml <-> this module


def _bug_claims() -> Iterator[dict[str, Any]]:
    with (ROOT / "docs" / "claims.toml").open("rb") as f:
        yield from (c for c in tomllib.load(f)["claims"] if "bug" in c or "evidence" in c)


def test_every_claim_evidence_names_a_test_here() -> None:
    """Every ``bug`` claim in docs/claims.toml has evidence, and every evidence names a
    test function of this module: renaming or deleting a test breaks this, not the docs."""
    claims = list(_bug_claims())
    assert claims
    names = []
    for claim in claims:
        assert "bug" in claim and "evidence" in claim, claim["id"]
        path, sep, name = claim["evidence"].partition("::")
        assert (path, sep) == (THIS_MODULE, "::"), claim["id"]
        assert name.startswith("test_") and callable(globals().get(name)), claim["evidence"]
        names.append(name)
    assert len(names) == len(set(names))  # one test per claim

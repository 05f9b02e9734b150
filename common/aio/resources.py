"""One lifecycle for every I/O resource a worker holds: the PostgreSQL pool, the Redis
client, the pooled HTTP client for fan-out, and the CPU executor (and, as experiment
switches ask, SPEC §6: a connection per use instead of the pool, an in-process cache, a
blocking HTTP client).

Frameworks enter :func:`open_resources` in their own lifespan hook (FastAPI ``lifespan``,
Litestar ``lifespan``, aiohttp ``cleanup_ctx``), once per worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import asyncpg
import httpx
from asyncpg.pool import PoolConnectionProxy
from redis.asyncio.client import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from .. import cpu, ratelimit
from ..admission import InFlight
from ..localcache import LocalCache
from ..redispool import AsyncBlockingPool
from ..settings import Settings

log = logging.getLogger("lab")

__all__ = ["BoundedPool", "Connect", "Database", "Resources", "open_pool", "open_resources"]


class Database(Protocol):
    """What the service uses of PostgreSQL: an ``asyncpg.Pool``, or :class:`Connect`. (One
    protocol rather than a union: Litestar's signature models, msgspec, accept one custom type
    in a field of ``Resources`` but not a union of two.)"""

    def acquire(
        self,
    ) -> contextlib.AbstractAsyncContextManager[PoolConnectionProxy | asyncpg.Connection]: ...

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None: ...

    async def fetchval(
        self,
        query: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109  # asyncpg's signature
    ) -> Any: ...


class _Queries:
    """``fetch``, ``fetchrow`` and ``fetchval`` as ``asyncpg.Pool`` has them, each on a
    connection from the subclass's ``acquire()``."""

    __slots__ = ()

    def acquire(
        self,
    ) -> contextlib.AbstractAsyncContextManager[PoolConnectionProxy | asyncpg.Connection]:
        raise NotImplementedError

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(  # asyncpg.Pool.fetchval's signature, timeout included
        self,
        query: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args, timeout=timeout)


class Connect(_Queries):
    """``LAB_DB_POOL=connect``: the part of ``asyncpg.Pool`` the service uses, except that
    every use opens a fresh connection and closes it afterwards, as an app without a pool
    does (connection set-up, authentication and teardown on every request)."""

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.database_url
        self._timeout = settings.db_timeout_s

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(
            self._dsn, timeout=self._timeout, command_timeout=self._timeout
        )
        try:
            yield conn
        finally:
            try:
                await conn.close(timeout=self._timeout)
            except Exception:  # the server went away: the answer stands, drop the socket
                conn.terminate()
            except BaseException:  # cancelled: drop the socket, then let it propagate
                conn.terminate()
                raise


class BoundedPool(_Queries):
    """An ``asyncpg.Pool`` whose every acquire waits at most ``LAB_DB_TIMEOUT_MS``. asyncpg's
    own ``acquire()`` and ``fetch()`` wait for a free connection without end, so a request
    would queue for as long as the pool's holders take; bounded, it gets SPEC §2.1's 503
    instead (``TimeoutError`` is in the service's ``DB_DOWN``). The sync twin's psycopg
    pool has the same bound built in (``timeout=``)."""

    __slots__ = ("_pool", "_timeout")

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout

    def acquire(self) -> contextlib.AbstractAsyncContextManager[PoolConnectionProxy]:
        return self._pool.acquire(timeout=self._timeout)


@dataclass(slots=True)
class Resources:
    settings: Settings
    db: Database
    redis: Redis
    http: aiohttp.ClientSession
    cpu: Executor | None
    ratelimit_script: AsyncScript
    task_slots: InFlight  # background tasks accepted and not finished, at most LAB_MAX_TASKS
    local_cache: LocalCache | None = None  # LAB_CACHE=local
    blocking_http: httpx.Client | None = None  # LAB_UPSTREAM_CLIENT=blocking


async def _warm(pool: asyncpg.Pool, size: int) -> None:
    """Open the pool's connections now, so the first requests do not pay for them.
    Best effort: a server that starts while PostgreSQL is down still starts (SPEC §3.16)."""

    async def touch() -> None:
        async with pool.acquire() as conn:
            await conn.execute("SELECT 1")

    results = await asyncio.gather(*(touch() for _ in range(size)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        log.warning("PostgreSQL pool warm-up failed: %s", failures[0])


async def keep_session(conn: asyncpg.Connection) -> None:
    """``LAB_DB_RESET=rollback``: what the pool does to a released connection instead of
    asyncpg's reset query (``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL``), which costs a round trip to PostgreSQL on every release. Given a ``reset``
    callback, asyncpg still rolls back a transaction left open (as psycopg_pool does, Flask's
    pool) and then calls this, which keeps the session as it is: safe only because no SQL of
    the lab's changes session state (tests/unit/test_db_reset.py guards it).
    docs/techniques/db-reset.md measures the difference."""


@contextlib.asynccontextmanager
async def open_pool(settings: Settings) -> AsyncIterator[BoundedPool]:
    """The worker's PostgreSQL pool, opened and warmed, closed on leaving. The pairs' pool, and
    the hello worlds' ``/db`` floors' (``impls/floors``): issue 8 compares the two on "the same
    query on the same pool", command timeout included (asyncpg arms a timer per query)."""
    # min_size=0: creating the pool never fails because PostgreSQL is down; _warm fills it.
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,
        max_size=settings.db_pool_size,
        timeout=settings.db_timeout_s,  # connect timeout
        command_timeout=settings.db_timeout_s,
        max_inactive_connection_lifetime=300,
        reset=keep_session if settings.db_reset == "rollback" else None,  # None: asyncpg's own
    )
    assert pool is not None
    await _warm(pool, settings.db_pool_size)
    try:
        yield BoundedPool(pool, settings.db_timeout_s)
    finally:
        try:
            await asyncio.wait_for(pool.close(), timeout=5)
        except (TimeoutError, OSError):
            pool.terminate()


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    if settings.db_pool == "connect":
        async with _open_resources(settings, Connect(settings)) as resources:
            yield resources
        return
    async with open_pool(settings) as pool, _open_resources(settings, pool) as resources:
        yield resources


@contextlib.asynccontextmanager
async def _open_resources(settings: Settings, db: Database) -> AsyncIterator[Resources]:
    # Timeouts and a blocking pool: Settings.redis_pool says why; the retry is per twin.
    redis_client: Redis = Redis.from_pool(
        AsyncBlockingPool.from_url(
            settings.redis_url,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            **settings.redis_pool(),
        )
    )
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200, ttl_dns_cache=300),
        raise_for_status=False,
    )
    # The experiment's blocking client: one pooled connection, as the calls go one at a time.
    blocking_http = (
        httpx.Client(
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=settings.upstream_timeout_ms / 1000,
            trust_env=False,  # the upstream is the lab's own: no proxies from the environment
        )
        if settings.upstream_client == "blocking"
        else None
    )
    executor = cpu.executor(settings)
    try:
        yield Resources(
            settings=settings,
            db=db,
            redis=redis_client,
            http=http,
            cpu=executor,
            ratelimit_script=redis_client.register_script(ratelimit.LUA_SOURCE),
            task_slots=InFlight(settings.max_tasks),
            local_cache=LocalCache.for_settings(settings),
            blocking_http=blocking_http,
        )
    finally:
        await http.close()
        if blocking_http is not None:
            blocking_http.close()
        await redis_client.aclose()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

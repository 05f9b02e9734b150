"""One lifecycle for every I/O resource a WSGI worker holds: the PostgreSQL pool, the Redis
client, the pooled HTTP client and its fan-out threads, the CPU executor and the background
task threads. The synchronous twin of :mod:`common.aio.resources`.

Flask has no lifespan hook: its adapter enters :func:`open_resources` once per worker process
(on first use, after the server has forked) and closes it at interpreter exit.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import redis
from psycopg import Connection
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from .. import cpu, ratelimit
from ..admission import LockedInFlight
from ..items import FANOUT_MAX
from ..localcache import LocalCache
from ..redispool import BlockingPool
from ..settings import Settings

log = logging.getLogger("lab")

__all__ = ["MAX_REQUEST_THREADS", "Connect", "Resources", "open_pool", "open_resources"]

# The most request threads any WSGI server of lab/matrix.toml runs in one process:
# gunicorn gthread ``--threads 8``, granian ``--blocking-threads 8``; the sync worker runs 1.
MAX_REQUEST_THREADS = 8
BACKGROUND_TASK_THREADS = 2

Pool = ConnectionPool[Connection[TupleRow]]


def _connection_kwargs(settings: Settings) -> dict[str, Any]:
    # Every statement runs alone (the stream reads one batch per query): autocommit spares the
    # BEGIN/COMMIT round trips. UTC so timestamptz values load as UTC datetimes, which
    # ``common.items.dump`` writes with ``Z`` (asyncpg always returns UTC).
    return {
        "autocommit": True,
        "options": "-c TimeZone=UTC",
        "connect_timeout": max(2, math.ceil(settings.db_timeout_s)),  # libpq's minimum
    }


class Connect:
    """``LAB_DB_POOL=connect``: ``ConnectionPool.connection()`` as the service uses it, except
    that every use opens a fresh connection and closes it afterwards, as an app without a
    pool does (connection set-up, authentication and teardown on every request)."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.database_url
        self._kwargs = _connection_kwargs(settings)

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Connection[TupleRow]]:
        kwargs = self._kwargs
        if timeout is not None:  # the pool's wait for a connection, here the connect itself
            kwargs = {**kwargs, "connect_timeout": max(2, math.ceil(timeout))}
        with psycopg.connect(self._url, **kwargs) as conn:  # closed on leaving
            yield conn


@dataclass(slots=True)
class Resources:
    settings: Settings
    db: Pool | Connect
    redis: redis.Redis
    http: httpx.Client
    fanout: ThreadPoolExecutor
    cpu: Executor | None
    ratelimit_script: Script
    tasks: ThreadPoolExecutor  # runs accepted tasks after the reply (SPEC §3.15)
    task_slots: LockedInFlight  # tasks accepted and not finished, at most LAB_MAX_TASKS
    local_cache: LocalCache | None = None  # LAB_CACHE=local


def _warm(pool: Pool, size: int) -> None:
    """Open the pool's connections now, so the first requests do not pay for them.
    Best effort: a server that starts while PostgreSQL is down still starts (SPEC §3.16).
    (Not ``pool.wait()``: that closes the pool when PostgreSQL is down.)"""
    held: list[Connection[TupleRow]] = []
    try:
        for _ in range(size):
            held.append(pool.getconn())
    except PoolTimeout as exc:
        log.warning("PostgreSQL pool warm-up failed: %s", exc)
    finally:
        for conn in held:
            pool.putconn(conn)


def pool_size(settings: Settings, threads: int) -> tuple[int, int]:
    """(min, max) connections for a process serving ``threads`` requests at once.

    Each request thread holds at most one connection at a time (a stream holds its own until
    it ends; background tasks and fan-out threads use none), so ``threads`` connections are
    all a process can use at once: that many are opened up front (capped by
    ``LAB_DB_POOL_SIZE``), and the pool may grow to ``max(LAB_DB_POOL_SIZE, threads)`` so a
    small setting never makes one request thread wait for another's connection. A sync
    worker thus holds one connection, not ten it can never use.
    """
    return min(settings.db_pool_size, threads), max(settings.db_pool_size, threads)


@contextlib.contextmanager
def open_pool(settings: Settings, threads: int) -> Iterator[Pool]:
    """The process's PostgreSQL pool for ``threads`` request threads, opened and warmed, closed
    on leaving. The Flask pair's pool, and its hello world's ``/db`` floor's
    (``impls/floors/hello_flask.py``): issue 8 compares the two on "the same pool"."""
    min_size, max_size = pool_size(settings, threads)
    pool: Pool = ConnectionPool(
        settings.database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs=_connection_kwargs(settings),
        timeout=settings.db_timeout_s,  # wait for a free connection
        max_idle=300,
        # psycopg_pool retries a failed connection with a doubling delay until it gives up
        # after reconnect_timeout, then grows again on demand. The default (300 s) lets the
        # delay reach minutes, so a pool would stay empty long after PostgreSQL came back.
        reconnect_timeout=10,
        name="lab",
        open=False,
    )
    # Opening never fails because PostgreSQL is down; the pool keeps reconnecting.
    pool.open(wait=False)
    _warm(pool, min_size)
    try:
        yield pool
    finally:
        pool.close(timeout=5)


@contextlib.contextmanager
def open_resources(
    settings: Settings, *, threads: int = MAX_REQUEST_THREADS
) -> Iterator[Resources]:
    """``threads``: how many requests this process serves at once (the WSGI server's
    ``wsgi.multithread`` tells the adapter whether that is 1); it sizes the pool."""
    if settings.db_pool == "connect":
        with _open_resources(settings, Connect(settings)) as resources:
            yield resources
        return
    with open_pool(settings, threads) as pool, _open_resources(settings, pool) as resources:
        yield resources


@contextlib.contextmanager
def _open_resources(settings: Settings, db: Pool | Connect) -> Iterator[Resources]:
    # Timeouts and a blocking pool: Settings.redis_pool says why; the retry is per twin.
    redis_client = redis.Redis.from_pool(
        BlockingPool.from_url(
            settings.redis_url,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            **settings.redis_pool(),
        )
    )
    # One pooled client, shared by the fan-out threads (httpx.Client is thread-safe): as many
    # connections as one /aggregate makes at most, kept alive between requests.
    http = httpx.Client(
        limits=httpx.Limits(max_connections=FANOUT_MAX, max_keepalive_connections=FANOUT_MAX),
        timeout=settings.upstream_timeout_ms / 1000,
        trust_env=False,  # the upstream is the lab's own: no proxies from the environment
    )
    fanout = ThreadPoolExecutor(max_workers=FANOUT_MAX, thread_name_prefix="lab-fanout")
    tasks = ThreadPoolExecutor(max_workers=BACKGROUND_TASK_THREADS, thread_name_prefix="lab-task")
    executor = cpu.executor(settings)
    try:
        yield Resources(
            settings=settings,
            db=db,
            redis=redis_client,
            http=http,
            fanout=fanout,
            cpu=executor,
            ratelimit_script=redis_client.register_script(ratelimit.LUA_SOURCE),
            tasks=tasks,
            task_slots=LockedInFlight(settings.max_tasks),
            local_cache=LocalCache.for_settings(settings),
        )
    finally:
        # Running tasks finish (they still need Redis and the CPU executor, closed below);
        # queued ones are dropped and stay "queued" in Redis. The server's graceful timeout
        # bounds the wait.
        tasks.shutdown(wait=True, cancel_futures=True)
        fanout.shutdown(wait=False, cancel_futures=True)
        http.close()
        redis_client.close()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

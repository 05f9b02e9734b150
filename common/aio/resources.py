"""One lifecycle for every I/O resource a worker holds: the PostgreSQL pool, the Redis
client, the pooled HTTP client for fan-out, and the CPU executor.

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

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.client import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from .. import cpu, ratelimit
from ..settings import Settings

log = logging.getLogger("lab")

__all__ = ["Resources", "open_resources"]


@dataclass(slots=True)
class Resources:
    settings: Settings
    db: asyncpg.Pool
    redis: Redis
    http: aiohttp.ClientSession
    cpu: Executor | None
    ratelimit_script: AsyncScript


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


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    # min_size=0: creating the pool never fails because PostgreSQL is down; _warm fills it.
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,
        max_size=settings.db_pool_size,
        timeout=settings.db_timeout_s,  # connect timeout
        command_timeout=settings.db_timeout_s,
        max_inactive_connection_lifetime=300,
    )
    assert pool is not None
    await _warm(pool, settings.db_pool_size)
    # Short socket timeouts and no retry on a timeout: a dead Redis must degrade the request
    # (BYPASS, fail-open) quickly rather than hold it (SPEC §3.6, §3.7). One immediate retry
    # on a connection error: after Redis restarts, every pooled connection is dead and fails
    # once on its next use, which without a retry degrades requests long after Redis is back
    # (seen by tests/reliability/test_faults_under_load.py). A refused connect fails at once.
    redis_client: Redis = aioredis.from_url(
        settings.redis_url,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        health_check_interval=0,
    )
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200, ttl_dns_cache=300),
        raise_for_status=False,
    )
    executor = cpu.executor(settings)
    try:
        yield Resources(
            settings=settings,
            db=pool,
            redis=redis_client,
            http=http,
            cpu=executor,
            ratelimit_script=redis_client.register_script(ratelimit.LUA_SOURCE),
        )
    finally:
        await http.close()
        await redis_client.aclose()
        try:
            await asyncio.wait_for(pool.close(), timeout=5)
        except (TimeoutError, OSError):
            pool.terminate()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

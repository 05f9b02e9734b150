"""A full Redis pool is told apart from an unreachable Redis (common/redispool.py), and the
limiter refuses rather than fails open when the pool is full (SPEC §3.7)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio

from common import problems
from common.aio import service as aio_service
from common.redispool import AsyncBlockingPool, BlockingPool, PoolExhausted
from common.settings import Settings
from common.sync import service as sync_service

REDIS_URL = "redis://127.0.0.1:6379/0"
NOBODY = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_a_full_sync_pool_is_exhausted_not_down() -> None:
    pool = BlockingPool.from_url(REDIS_URL, max_connections=1, timeout=0.1)
    client = redis.Redis.from_pool(pool)
    held = pool.get_connection()
    try:
        with pytest.raises(PoolExhausted):
            client.ping()
    finally:
        pool.release(held)
    assert client.ping() is True  # a connection free again: served
    client.close()


def test_an_unreachable_redis_is_down_not_exhausted() -> None:
    client = redis.Redis.from_pool(
        BlockingPool.from_url(NOBODY, max_connections=1, timeout=0.1, socket_connect_timeout=0.2)
    )
    with pytest.raises(redis.exceptions.ConnectionError) as caught:
        client.ping()
    assert not isinstance(caught.value, PoolExhausted)
    client.close()


def test_a_full_async_pool_is_exhausted_not_down() -> None:
    async def run() -> None:
        pool = AsyncBlockingPool.from_url(REDIS_URL, max_connections=1, timeout=0.1)
        client = redis.asyncio.Redis.from_pool(pool)
        held = await pool.get_connection()
        try:
            with pytest.raises(PoolExhausted):
                await client.ping()
        finally:
            await pool.release(held)
        assert await client.ping() is True
        await client.aclose()

        down = redis.asyncio.Redis.from_pool(
            AsyncBlockingPool.from_url(
                NOBODY, max_connections=1, timeout=0.1, socket_connect_timeout=0.2
            )
        )
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            await down.ping()
        assert not isinstance(caught.value, PoolExhausted)
        await down.aclose()

    asyncio.run(run())


def _exhausted(**_: Any) -> Any:
    raise PoolExhausted("no free Redis connection within 1.0 s")


async def _exhausted_async(**_: Any) -> Any:
    raise PoolExhausted("no free Redis connection within 1.0 s")


@pytest.mark.parametrize("fail_closed", [False, True])
def test_the_limiter_refuses_when_its_pool_is_full(fail_closed: bool) -> None:
    """Whatever ``LAB_LIMITER_FAIL`` says about Redis being down: a full pool is a 503
    ``overloaded`` with ``Retry-After``, never a request let through."""
    settings = Settings.from_env({"LAB_LIMITER_FAIL": "closed" if fail_closed else "open"})
    sync_res: Any = SimpleNamespace(settings=settings, ratelimit_script=_exhausted)
    aio_res: Any = SimpleNamespace(settings=settings, ratelimit_script=_exhausted_async)
    for call in (
        lambda: sync_service.limited(sync_res, "127.0.0.1"),
        lambda: asyncio.run(aio_service.limited(aio_res, "127.0.0.1")),
    ):
        with pytest.raises(problems.Problem) as caught:
            call()
        assert caught.value.status == 503
        assert caught.value.type == "urn:lab:problem:overloaded"
        assert caught.value.headers == {"Retry-After": "1"}

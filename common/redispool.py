"""The workers' Redis pools: redis-py's ``BlockingConnectionPool`` (sync and async), with one
change: a pool that stays full past its timeout says so with :class:`PoolExhausted`.

redis-py raises the same ``ConnectionError`` for "no free connection in this worker's pool"
as for "Redis is unreachable", and the lab answers them differently. Redis unreachable is an
outage: the cache bypasses it and the limiter fails open (SPEC §3.6, §3.7). A full pool is
this worker saturated while Redis answers: were the limiter to fail open then, a flood large
enough to fill the pool would switch the limiter off for itself. So the limiter refuses
instead (503 ``overloaded``), and the cache, which only loses speed, still bypasses.
"""

from __future__ import annotations

import asyncio
import queue
from typing import Any

import redis
import redis.asyncio

__all__ = ["AsyncBlockingPool", "BlockingPool", "PoolExhausted"]


class PoolExhausted(redis.exceptions.RedisError):
    """Every connection of the worker's pool stayed in use for the pool's whole timeout."""


class BlockingPool(redis.BlockingConnectionPool):
    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.exceptions.ConnectionError as exc:
            if isinstance(exc.__context__, queue.Empty):  # its wait timed out, nothing else
                raise PoolExhausted(f"no free Redis connection within {self.timeout} s") from exc
            raise


class AsyncBlockingPool(redis.asyncio.BlockingConnectionPool):
    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.exceptions.ConnectionError as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError):  # its wait timed out
                raise PoolExhausted(f"no free Redis connection within {self.timeout} s") from exc
            raise

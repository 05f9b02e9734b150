"""The database floors' pools: what the pairs open (``common/aio/resources.py``,
``common/sync/resources.py``) reduced to its size and URL, from the same ``LAB_*`` settings,
so a pair's ``/db`` and its floor's run the same query on the same pool."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from common.settings import get_settings


@contextlib.asynccontextmanager
async def asyncpg_pool() -> AsyncIterator[asyncpg.Pool]:
    settings = get_settings()
    size = settings.db_pool_size
    async with asyncpg.create_pool(settings.database_url, min_size=size, max_size=size) as pool:
        yield pool

"""Litestar's hello world, tuned as its docs advise: async handlers (no thread hop), msgspec
serialisation (its default), OpenAPI off.

``/db`` is the database path's floor: the pair's query on the pair's asyncpg pool
(``common.aio.resources.open_pool``), opened in a lifespan and kept in ``app.state``, the row
dumped with orjson."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from litestar import Litestar, MediaType, Response, get
from litestar.datastructures import State

from common import sql, techempower
from common.aio.resources import open_pool
from common.settings import get_settings
from impls.floors import app_work


@get("/json")
async def json() -> dict[str, str]:
    return {"message": "Hello, World!"}


@get("/json-work")
async def json_work() -> dict[str, str]:
    app_work()  # the control (impls/floors/__init__.py)
    return {"message": "Hello, World!"}


@get("/plaintext", media_type=MediaType.TEXT)
async def plaintext() -> str:
    return "Hello, World!"


@get("/db")
async def db(state: State) -> Response[bytes]:
    row = await state.pool.fetchrow(sql.WORLD_BY_ID, techempower.random_number())
    body = orjson.dumps({"id": row[0], "randomNumber": row[1]})
    return Response(body, media_type=MediaType.JSON)


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    async with open_pool(get_settings()) as pool:
        app.state.pool = pool
        yield


app = Litestar(
    route_handlers=[json, json_work, plaintext, db, health],
    openapi_config=None,
    lifespan=[lifespan],
)

"""FastAPI's hello world, tuned as its docs advise: a return type so pydantic serialises the
body straight to JSON bytes (FastAPI deprecated ``ORJSONResponse`` for this), no OpenAPI or
docs routes.

``/db`` is the database path's floor: the pair's query (``common.sql.WORLD_BY_ID``) on the
pair's asyncpg pool (``common.aio.resources.open_pool``), opened in a lifespan, the row dumped
with orjson; none of the lab's middleware, dependencies or error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from common import sql, techempower
from common.aio.resources import open_pool
from common.settings import get_settings
from impls.floors import app_work


class Message(BaseModel):
    message: str


class Health(BaseModel):
    status: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
    async with open_pool(get_settings()) as pool:
        yield {"pool": pool}


app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)


@app.get("/json")
async def json() -> Message:
    return Message(message="Hello, World!")


@app.get("/json-work")
async def json_work() -> Message:
    app_work()  # the control (impls/floors/__init__.py)
    return Message(message="Hello, World!")


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext() -> str:
    return "Hello, World!"


@app.get("/db")
async def db(request: Request) -> Response:
    row = await request.state.pool.fetchrow(sql.WORLD_BY_ID, techempower.random_number())
    body = orjson.dumps({"id": row[0], "randomNumber": row[1]})
    return Response(body, media_type="application/json")


@app.get("/health")
async def health() -> Health:
    return Health(status="ok")

"""aiohttp's hello world, tuned as its docs advise: uvloop, no access log, a fast ``dumps``.

``app`` serves gunicorn's aiohttp worker; ``python -m impls.floors.hello_aiohttp --host H
--port P --workers N`` is aiohttp's own server (N processes sharing the port with
SO_REUSEPORT), the same shape as the lab's aiohttp launcher.

``/db`` is the database path's floor: the pair's query on the pair's asyncpg pool
(``common.aio.resources.open_pool``), opened in a ``cleanup_ctx`` and kept under an ``AppKey``,
the row dumped with orjson.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Sequence

import orjson
from aiohttp import web

from common import sql, techempower
from common.aio.resources import BoundedPool, open_pool
from common.settings import get_settings
from impls.floors import app_work

POOL = web.AppKey("pool", BoundedPool)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


async def json(request: web.Request) -> web.Response:
    return web.json_response({"message": "Hello, World!"}, dumps=_dumps)


async def json_work(request: web.Request) -> web.Response:
    app_work()  # the control (impls/floors/__init__.py)
    return web.json_response({"message": "Hello, World!"}, dumps=_dumps)


async def plaintext(request: web.Request) -> web.Response:
    return web.Response(text="Hello, World!")


async def db(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(sql.WORLD_BY_ID, techempower.random_number())
    body = orjson.dumps({"id": row[0], "randomNumber": row[1]})
    return web.Response(body=body, content_type="application/json")


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_pool(get_settings()) as pool:
        app[POOL] = pool
        yield


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=_dumps)


def make_app() -> web.Application:
    application = web.Application()
    application.cleanup_ctx.append(pool_ctx)
    application.router.add_get("/json", json)
    application.router.add_get("/json-work", json_work)
    application.router.add_get("/plaintext", plaintext)
    application.router.add_get("/db", db)
    application.router.add_get("/health", health)
    return application


app = make_app()


def _serve(host: str, port: int, reuse_port: bool) -> None:
    import uvloop

    web.run_app(
        make_app(),
        host=host,
        port=port,
        access_log=None,
        print=None,
        reuse_port=reuse_port,
        backlog=2048,
        loop=uvloop.new_event_loop(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impls.floors.hello_aiohttp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.workers <= 1:
        _serve(args.host, args.port, reuse_port=False)
        return 0
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            _serve(args.host, args.port, reuse_port=True)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

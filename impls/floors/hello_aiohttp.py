"""aiohttp's hello world, tuned as its docs advise: uvloop, no access log, a fast ``dumps``.

``app`` serves gunicorn's aiohttp worker; ``python -m impls.floors.hello_aiohttp --host H
--port P --workers N`` is aiohttp's own server (N processes sharing the port with
SO_REUSEPORT), the same shape as the lab's aiohttp launcher.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import orjson
from aiohttp import web


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


async def json(request: web.Request) -> web.Response:
    return web.json_response({"message": "Hello, World!"}, dumps=_dumps)


async def plaintext(request: web.Request) -> web.Response:
    return web.Response(text="Hello, World!")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=_dumps)


def make_app() -> web.Application:
    application = web.Application()
    application.router.add_get("/json", json)
    application.router.add_get("/plaintext", plaintext)
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

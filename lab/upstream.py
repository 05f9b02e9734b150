"""The upstream service of SPEC §3.12: answers ``GET /work?i=&delay_ms=`` after the delay.

``--fail-every K`` answers 503 to every K-th call, so fault tests can see partial failure.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

FAIL_EVERY = web.AppKey("fail_every", int)
CALLS = web.AppKey("calls", list)


async def work(request: web.Request) -> web.Response:
    try:
        i = int(request.query.get("i", "0"))
        delay_ms = int(request.query.get("delay_ms", "0"))
    except ValueError:
        return web.json_response({"error": "i and delay_ms must be integers"}, status=400)
    calls = request.app[CALLS]
    calls[0] += 1
    fail_every = request.app[FAIL_EVERY]
    if delay_ms > 0:
        await asyncio.sleep(min(delay_ms, 60_000) / 1000)
    if fail_every and calls[0] % fail_every == 0:
        return web.json_response({"error": "injected failure"}, status=503)
    return web.json_response({"i": i, "delay_ms": delay_ms, "value": i * i})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(fail_every: int = 0) -> web.Application:
    app = web.Application()
    app[FAIL_EVERY] = fail_every
    app[CALLS] = [0]
    app.router.add_get("/work", work)
    app.router.add_get("/health", health)
    return app


def command(host: str, port: int, *, fail_every: int = 0) -> int:
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a base dependency on Linux
        loop_factory = None
    web.run_app(
        make_app(fail_every),
        host=host,
        port=port,
        access_log=None,
        print=None,
        backlog=1024,
        loop=loop_factory() if loop_factory else None,
    )
    return 0

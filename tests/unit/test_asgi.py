"""common/asgi.py's LabMiddleware, driven in-process: the head rules on every response, the
body left alone or compressed, the exact-path guard. The conformance suite checks the same
rules over HTTP on every pair; these pin the cases a real app rarely sends."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

from common.asgi import LabMiddleware, Message, Receive, Scope, Send
from common.settings import Settings

SETTINGS = Settings(database_url="", redis_url="", upstream_url="")
BODY = b'{"message":"Hello, World!"}' * 100  # over the compression threshold
# One dict for every request, as a constant-minded app would send it.
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json")],
}


async def constant_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send(START)
    await send({"type": "http.response.body", "body": BODY})


def call(
    mw: LabMiddleware, path: str = "/json", headers: list[tuple[bytes, bytes]] | None = None
) -> list[Message]:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": path}
    scope["headers"] = headers or []
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(mw(scope, receive, send))
    return sent


def names(message: Message) -> list[bytes]:
    return [name for name, _ in message["headers"]]


def test_head_rules_leave_the_apps_message_alone() -> None:
    mw = LabMiddleware(constant_app, SETTINGS)
    for _ in range(3):
        start, body = call(mw)
        assert names(start).count(b"server-timing") == 1
        assert (b"vary", b"Accept-Encoding") in start["headers"]
        assert body["body"] == BODY
    assert START["headers"] == [(b"content-type", b"application/json")]


def test_an_accepted_coding_compresses_the_whole_body() -> None:
    mw = LabMiddleware(constant_app, SETTINGS)
    start, body = call(mw, headers=[(b"accept-encoding", b"gzip")])
    head = dict(start["headers"])
    assert head[b"content-encoding"] == b"gzip"
    assert head[b"vary"] == b"Accept-Encoding"
    assert int(head[b"content-length"]) == len(body["body"])
    assert gzip.decompress(body["body"]) == BODY


def test_exact_paths_answer_404_before_the_app_with_the_head_rules() -> None:
    mw = LabMiddleware(constant_app, SETTINGS, exact_paths=True)
    for path in ("/json/", "//json", "/items//1"):
        start, body = call(mw, path)
        assert start["status"] == 404, path
        assert b"server-timing" in names(start)
        assert b'"status":404' in body["body"].replace(b" ", b"")
    assert call(mw, "/")[0]["status"] == 200
    assert call(LabMiddleware(constant_app, SETTINGS), "/json/")[0]["status"] == 200

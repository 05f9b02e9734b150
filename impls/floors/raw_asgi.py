"""A bare ASGI 3 application: the server's floor (no framework, no middleware).

Bodies and header lists are built once at import; a request costs one dict lookup and two
``send`` calls. Lifespan is answered so every server starts it without a warning.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from impls.floors import app_work

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _route(media_type: bytes, body: bytes) -> tuple[Message, Message]:
    start: Message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", media_type), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


ROUTES: dict[str, tuple[Message, Message]] = {
    "/json": _route(b"application/json", b'{"message":"Hello, World!"}'),
    "/plaintext": _route(b"text/plain; charset=utf-8", b"Hello, World!"),
    "/health": _route(b"application/json", b'{"status":"ok"}'),
}
NOT_FOUND = _route(b"text/plain; charset=utf-8", b"Not Found")
NOT_FOUND[0]["status"] = 404


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        path = scope["path"]
        if path == "/json-work":  # the control: /json after a fixed amount of app work
            app_work()
            path = "/json"
        start, body = ROUTES.get(path, NOT_FOUND)
        await send(start)
        await send(body)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

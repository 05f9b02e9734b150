"""One pure ASGI middleware for the lab's cross-cutting rules (SPEC §2.2, §2.3):

* ``Server-Timing: app;dur=<ms>`` measured from the request entering the app to the response
  head; ``Server``/``Date`` for servers that do not write them;
* the 64 KiB request body limit (413 before the body is read when ``Content-Length`` says so);
* compression (zstd, br, gzip) of whole and streamed bodies, ``Vary: Accept-Encoding``.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``) because it wraps ``send`` without an extra
task per request or buffering streams; the technique page on middleware style measures why.
Used as is by FastAPI and Litestar: both accept any ASGI middleware.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from . import compression, negotiation
from .problems import MAX_BODY_BYTES, Problem, payload_too_large
from .settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["LabMiddleware", "http_date", "problem_response"]

_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """An RFC 9110 date, formatted once a second (it is on every response)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode())
    return _date_cache[1]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def problem_response(send: Send, problem: Problem) -> None:
    body = problem.body()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LabMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, *, count_body: bool = True) -> None:
        """A declared ``Content-Length`` over the limit is always answered here, before the app
        runs. ``count_body=False`` leaves chunked bodies to a framework's own limit (FastAPI's
        ``max_body_size``, Litestar's ``request_max_body_size``), whose error its handlers
        render as a problem."""
        self.app = app
        self.settings = settings
        self.count_body = count_body
        self.server_headers = settings.add_server_headers
        self.server_name = settings.server_name.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            send = self._wrap_send(send, started, None)
            await problem_response(send, payload_too_large())
            return
        coding = negotiation.best_encoding(header(scope, b"accept-encoding"))
        if self.count_body:
            receive = _limited_receive(receive)
        await self.app(scope, receive, self._wrap_send(send, started, coding))

    def _wrap_send(self, send: Send, started: float, coding: str | None) -> Send:
        return _Responder(self, send, started, coding).send


class _Responder:
    """Per-request state of :class:`LabMiddleware`: holds the response head until the first
    body chunk tells whether the body is whole (compress once) or streamed (compress chunks)."""

    __slots__ = ("coding", "encoder", "mw", "passthrough", "pending", "raw_send", "started")

    def __init__(self, mw: LabMiddleware, send: Send, started: float, coding: str | None) -> None:
        self.mw = mw
        self.raw_send = send
        self.started = started
        self.coding = coding
        self.pending: Message | None = None
        self.encoder: compression.Encoder | None = None
        self.passthrough = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = list(message.get("headers", []))
            dur = (time.perf_counter() - self.started) * 1000
            headers.append((b"server-timing", b"app;dur=%.3f" % dur))
            if self.mw.server_headers:
                headers.append((b"server", self.mw.server_name))
                headers.append((b"date", http_date()))
            message["headers"] = headers
            self.pending = message
        elif kind != "http.response.body" or self.passthrough:
            await self.raw_send(message)
        elif self.encoder is not None:
            more = message.get("more_body", False)
            body = self.encoder.compress(message.get("body", b""))
            if not more:
                body += self.encoder.finish()
            if body or not more:
                await self.raw_send({"type": "http.response.body", "body": body, "more_body": more})
        elif self.pending is not None:
            start, self.pending = self.pending, None
            await self._first_body(start, message)
        else:
            await self.raw_send(message)

    async def _first_body(self, start: Message, message: Message) -> None:
        settings = self.mw.settings
        headers: list[tuple[bytes, bytes]] = start["headers"]
        media_type = content_encoding = vary = None
        length: int | None = None
        for key, value in headers:
            if key == b"content-type":
                media_type = value.decode("latin-1")
            elif key == b"content-encoding":
                content_encoding = value.decode("latin-1")
            elif key == b"content-length":
                length = int(value)
            elif key == b"vary":
                vary = value.decode("latin-1")
        body: bytes = message.get("body", b"")
        streamed = bool(message.get("more_body", False))
        if compression.is_compressible(media_type):
            headers = [h for h in headers if h[0] != b"vary"]
            headers.append((b"vary", compression.merge_vary(vary, "Accept-Encoding").encode()))
        chosen = (
            self.coding
            if compression.should_compress(
                coding=self.coding,
                media_type=media_type,
                status=start["status"],
                content_encoding=content_encoding,
                length=length if streamed else len(body),
                min_size=settings.compression_min_size,
            )
            else None
        )
        if chosen is None:
            start["headers"] = headers
            self.passthrough = True
            await self.raw_send(start)
            await self.raw_send(message)
            return
        headers = [h for h in headers if h[0] != b"content-length"]
        headers.append((b"content-encoding", chosen.encode()))
        start["headers"] = headers
        if not streamed:
            body = compression.compress_body(chosen, body, settings)
            headers.append((b"content-length", str(len(body)).encode()))
            await self.raw_send(start)
            await self.raw_send({"type": "http.response.body", "body": body})
            return
        self.encoder = compression.new_encoder(chosen, settings)
        await self.raw_send(start)
        await self.raw_send(
            {"type": "http.response.body", "body": self.encoder.compress(body), "more_body": True}
        )


def _limited_receive(receive: Receive) -> Receive:
    """Count a chunked body as it arrives; past the limit the handler sees a 413 problem."""
    received = 0

    async def wrapped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise payload_too_large()
        return message

    return wrapped

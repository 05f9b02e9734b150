"""One pure ASGI middleware for the lab's cross-cutting rules (SPEC §2.2, §2.3):

* ``Server-Timing: app;dur=<ms>`` measured from the request entering the app to the response
  head (the servers write ``Server`` and ``Date``);
* the 64 KiB request body limit, raised as a 413 problem when the handler reads the body
  (after routing, so a wrong method or route is still 405/404: SPEC §2.1's order);
* compression (zstd, br, gzip) of whole and streamed bodies, ``Vary: Accept-Encoding``.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``) because it wraps ``send`` without an extra
task per request or buffering streams; the technique page on middleware style measures why.
FastAPI adds it with ``app.add_middleware``; Litestar's app is wrapped in it, because Litestar
runs its own middleware per route, after routing, where 404 and 405 never pass.

Experiment switches (SPEC §6): ``LAB_TIMING=off`` drops ``Server-Timing``; ``LAB_ACCESS_LOG=on``
logs each request once the app has returned (:mod:`common.accesslog`). ``LAB_MIDDLEWARE=
basehttp`` swaps this class for :class:`common.basehttp.BaseHTTPLabMiddleware` (FastAPI only).
``LAB_MAX_INFLIGHT=n`` puts :func:`admitted`'s gate between the middleware and the app.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any

from . import compression, negotiation, stall
from .accesslog import log_access
from .admission import EXEMPT_PATHS, InFlight, worker_gate
from .problems import MAX_BODY_BYTES, Problem, not_found, overloaded, payload_too_large
from .settings import Settings
from .timing import server_timing_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["LabMiddleware", "admitted", "problem_response"]


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
    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        *,
        limit_body: bool = True,
        exact_paths: bool = False,
    ) -> None:
        """``limit_body=False`` leaves the body limit to a framework that renders its own 413 as
        a problem (Litestar's ``request_max_body_size``). FastAPI keeps it here: Starlette's
        limiter answers an oversize ``Content-Length`` with a plain-text 413.

        ``exact_paths=True`` answers 404 for a path with a trailing or a repeated slash
        before the app sees it, for a router that would normalise it into a route
        (Litestar's: SPEC §2.1 routes exact paths). Here rather than in a wrapper of its
        own, to spare every request one more ASGI layer."""
        self.app = admitted(app, settings)
        self.settings = settings
        self.limit_body = limit_body
        self.exact_paths = exact_paths
        # Read on every request: plain attributes, not a walk through settings.
        self.timing = settings.timing
        self.access_log = settings.access_log
        self.write_timeout = settings.write_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        accept_encoding = content_length = None
        for key, value in scope["headers"]:  # one pass for both headers
            if key == b"accept-encoding":
                accept_encoding = value.decode("latin-1")
            elif key == b"content-length":
                content_length = value.decode("latin-1")
        coding = negotiation.best_encoding(accept_encoding) if accept_encoding else None
        if self.limit_body:
            receive = _limited_receive(receive, content_length)
        app = self.app
        if self.exact_paths:
            path = scope["path"]
            if path != "/" and (path.endswith("/") or "//" in path):
                app = _not_found
        timed = started if self.timing else None
        try:
            if coding is None and not self.access_log:
                # The hot path: no coding to apply, so every rule is decided on the response
                # head and the body passes straight through; one closure, no per-request
                # object. A plain function that returns the server's awaitable, not an
                # ``async def``: ASGI asks only for an awaitable callable, and a coroutine of
                # our own would cost a frame and a suspension chain on each of the sends. Only
                # a streamed chunk's send is bounded in time (common/stall.py).
                write_timeout = self.write_timeout

                def send_identity(message: Message) -> Awaitable[None]:
                    if message["type"] == "http.response.start":
                        message = _head_rules(message, timed)
                    elif message.get("more_body"):
                        return stall.within(send(message), write_timeout)
                    return send(message)

                await app(scope, receive, send_identity)
                return
            responder = _Responder(self.settings, send, timed, coding)
            if not self.access_log:
                await app(scope, receive, responder.send)
                return
            try:
                await app(scope, receive, responder.send)
            finally:  # an exception escaping the app is the server's 500
                duration_ms = (time.perf_counter() - started) * 1000
                log_access(scope["method"], scope["path"], responder.status or 500, duration_ms)
        except* stall.ClientStalled as stalled:
            # The server sees a response that never completed and closes the connection:
            # the client gets a truncated body, never one that looks whole.
            stall.abandoned(scope["path"], stalled.exceptions[0])


def admitted(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` behind the worker's in-flight gate when ``LAB_MAX_INFLIGHT`` is set, else ``app``
    itself: with the switch off (the default) no request pays for it. Inside the lab's
    middleware, so a shed 503 carries ``Server-Timing`` and ``Vary`` like any response."""
    gate = worker_gate(settings)
    return app if gate is None else _Admission(app, gate)


class _Admission:
    """SPEC §6 ``LAB_MAX_INFLIGHT``: a request over the bound is answered a 503 ``overloaded``
    problem at once, without running the app; an admitted one counts until the app returns,
    which for a stream is after its last chunk."""

    def __init__(self, app: ASGIApp, gate: InFlight) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        gate = self.gate
        if not gate.admit():
            await problem_response(send, overloaded(gate.limit))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            gate.release()


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await problem_response(send, not_found())


def _head_rules(start: Message, started: float | None) -> Message:
    """The rules a response head alone decides: ``Server-Timing`` (when ``started`` is
    given), and ``Vary: Accept-Encoding`` on a compressible type, whether or not this
    response is compressed. Returns a new message: the app may send the same dict on every
    request (a constant), which must not grow a header per request."""
    headers = list(start.get("headers", ()))
    media_type = vary = None
    for key, value in headers:
        if key == b"content-type":
            media_type = value
        elif key == b"vary":
            vary = value
    if started is not None:
        headers.append((b"server-timing", server_timing_bytes(started)))
    if _compressible(media_type):
        if vary is None:
            headers.append((b"vary", b"Accept-Encoding"))
        else:
            merged = compression.merge_vary(vary.decode("latin-1"), "Accept-Encoding")
            headers = [h for h in headers if h[0] != b"vary"]
            headers.append((b"vary", merged.encode()))
    return {**start, "headers": headers}


@lru_cache(maxsize=128)
def _compressible(media_type: bytes | None) -> bool:
    return compression.is_compressible(None if media_type is None else media_type.decode("latin-1"))


class _Responder:
    """Per-request state of :class:`LabMiddleware` when the body may be compressed (or the
    access log needs the status): holds the response head until the first body chunk tells
    whether the body is whole (compress once) or streamed (compress chunks)."""

    __slots__ = (
        "coding",
        "encoder",
        "passthrough",
        "pending",
        "raw_send",
        "settings",
        "started",
        "status",
    )

    def __init__(
        self, settings: Settings, send: Send, started: float | None, coding: str | None
    ) -> None:
        self.settings = settings
        self.raw_send = _bounded(send, settings.write_timeout_s)
        self.started = started
        self.coding = coding
        self.pending: Message | None = None
        self.encoder: compression.Encoder | None = None
        self.passthrough = False
        self.status: int | None = None

    async def send(self, message: Message) -> None:
        if self.passthrough:
            await self.raw_send(message)
            return
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.pending = _head_rules(message, self.started)
        elif kind != "http.response.body":
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
        headers: list[tuple[bytes, bytes]] = start["headers"]
        media_type = content_encoding = length = None
        for key, value in headers:
            if key == b"content-type":
                media_type = value
            elif key == b"content-encoding":
                content_encoding = value
            elif key == b"content-length":
                length = value
        settings = self.settings
        body: bytes = message.get("body", b"")
        streamed = bool(message.get("more_body", False))
        if self.coding is None or not compression.should_compress(
            coding=self.coding,
            media_type=None if media_type is None else media_type.decode("latin-1"),
            status=start["status"],
            content_encoding=None if content_encoding is None else content_encoding.decode(),
            length=(None if length is None else int(length)) if streamed else len(body),
            min_size=settings.compression_min_size,
        ):
            self.passthrough = True
            await self.raw_send(start)
            await self.raw_send(message)
            return
        chosen = self.coding
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


def _bounded(send: Send, seconds: float) -> Send:
    """``send`` with each streamed chunk's write bounded in time (common/stall.py)."""

    def bounded(message: Message) -> Awaitable[None]:
        if message.get("more_body"):
            return stall.within(send(message), seconds)
        return send(message)

    return bounded


def _limited_receive(receive: Receive, content_length: str | None) -> Receive:
    """The body limit, at the first read: a declared ``Content-Length`` over it fails before
    anything is read; a chunked body is counted as it arrives. The handler reading the body
    sees a 413 :class:`Problem`, which its framework's handler renders."""
    declared_too_large = (
        content_length is not None
        and content_length.isdigit()
        and int(content_length) > MAX_BODY_BYTES
    )
    received = 0

    async def wrapped() -> Message:
        nonlocal received
        if declared_too_large:
            raise payload_too_large()
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise payload_too_large()
        return message

    return wrapped

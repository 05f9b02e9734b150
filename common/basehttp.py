"""``LAB_MIDDLEWARE=basehttp``: :class:`~common.asgi.LabMiddleware`'s behaviour written in
Starlette's ``BaseHTTPMiddleware`` style, to measure what that style costs (SPEC §6).

The rules are the same (``Server-Timing``, ``Vary``, compression of whole and streamed
bodies, the 64 KiB body limit after routing, the access-log switch); only the style differs:
``dispatch(request, call_next)`` gets every response as a stream produced by a task of its
own, so a whole body is known only by its ``Content-Length`` and has to be gathered again to
be compressed. FastAPI only (Starlette's class); the other adapters refuse the switch.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator

from starlette.background import BackgroundTask, BackgroundTasks
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import compression, negotiation
from .accesslog import log_access
from .asgi import _limited_receive, admitted
from .settings import Settings
from .timing import server_timing

__all__ = ["BaseHTTPLabMiddleware"]


class BaseHTTPLabMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        # The body limit wraps the inner app's ``receive``, as in the pure class, so the 413
        # is raised in the handler that reads the body and rendered by the framework's
        # handler, after routing (SPEC §2.1). BaseHTTPMiddleware has no hook for it: its own
        # ``receive`` runs in a task of its own, where a raised problem is only a 500.
        # LAB_MAX_INFLIGHT's gate sits inside too, as in the pure class.
        super().__init__(admitted(_BodyLimit(app), settings))
        self.settings = settings

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        headers = response.headers
        if self.settings.timing:
            headers["server-timing"] = server_timing(started)
        response = await self._compress(request, response)
        if self.settings.access_log:
            response = _logged(request, response, started)
        return response

    async def _compress(self, request: Request, response: Response) -> Response:
        headers = response.headers
        media_type = headers.get("content-type")
        if not compression.is_compressible(media_type):
            return response
        headers["vary"] = compression.merge_vary(headers.get("vary"), "Accept-Encoding")
        coding = negotiation.best_encoding(request.headers.get("accept-encoding"))
        declared = headers.get("content-length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        if coding is None or not compression.should_compress(
            coding=coding,
            media_type=media_type,
            status=response.status_code,
            content_encoding=headers.get("content-encoding"),
            length=length,
            min_size=self.settings.compression_min_size,
        ):
            return response
        chunks: AsyncIterable[str | bytes | memoryview] = response.body_iterator  # type: ignore[attr-defined]  # call_next's stream
        if length is not None:  # a whole body: gather it again, compress it once
            head = {k: v for k, v in headers.items() if k != "content-length"}
            head["content-encoding"] = coding
            body = b"".join([chunk async for chunk in _bytes(chunks)])
            data = compression.compress_body(coding, body, self.settings)
            return Response(data, status_code=response.status_code, headers=head)
        encoder = compression.new_encoder(coding, self.settings)

        async def encoded() -> AsyncIterator[bytes]:
            async for chunk in _bytes(chunks):
                if data := encoder.compress(chunk):
                    yield data
            yield encoder.finish()

        # A stream keeps call_next's response and only swaps its body. A new
        # StreamingResponse would listen for the client's disconnect on ``receive`` while the
        # app's own StreamingResponse, inside call_next, listens on the same channel: on
        # granian the two listeners made the stream fail after a compressed /report (a 500
        # and an interrupted cursor transaction, seen in CI on 2026-12-02).
        headers["content-encoding"] = coding
        response.body_iterator = encoded()  # type: ignore[attr-defined]
        return response


async def _bytes(chunks: AsyncIterable[str | bytes | memoryview]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)


class _BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            receive = _limited_receive(receive, None if length is None else length.decode())
        await self.app(scope, receive, send)


def _logged(request: Request, response: Response, started: float) -> Response:
    """The line is written once the body has been sent, as the pure class does: a background
    task of the outer response (``call_next``'s stream never carries the app's own)."""
    status, method, path = response.status_code, request.method, request.url.path

    async def log() -> None:
        log_access(method, path, status, (time.perf_counter() - started) * 1000)

    if response.background is not None:  # not expected; keep it rather than lose it
        tasks = BackgroundTasks([response.background])
        tasks.add_task(log)
        response.background = tasks
    else:
        response.background = BackgroundTask(log)
    return response

"""One WSGI middleware for the lab's cross-cutting rules (SPEC §2.2, §2.3), the twin of
:mod:`common.asgi`:

* ``Server-Timing: app;dur=<ms>`` measured from the request entering the app to the app's
  ``start_response``;
* the 64 KiB request body limit, checked when the app reads ``wsgi.input`` (a declared
  ``Content-Length`` at the first read, a chunked body as it is counted), so routing answers
  first: 405 before 413, SPEC §2.1's order;
* compression (zstd, br, gzip) of whole and streamed bodies, ``Vary: Accept-Encoding``.

Every decision comes from the same pure functions as the ASGI middleware
(:mod:`common.compression`, :mod:`common.negotiation`); only the plumbing is WSGI's.

The real ``start_response`` is called before ``__call__`` returns, never lazily while the
body is iterated: granian's WSGI interface reads the status and headers as soon as the
application returns. A body with a known length (``Content-Length``, or a list) is whole and
compressed in one shot; any other iterable is a stream, compressed chunk by chunk with a
flush after each, so the client reads it as it comes and memory stays flat.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from . import compression, negotiation
from .accesslog import log_access
from .problems import MAX_BODY_BYTES, payload_too_large
from .settings import Settings, SettingsError
from .timing import server_timing

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["LabWSGIMiddleware", "LimitedInput"]

Headers = list[tuple[str, str]]


class LabWSGIMiddleware:
    def __init__(self, app: WSGIApplication, settings: Settings) -> None:
        """The body limit lives here rather than in Flask's ``MAX_CONTENT_LENGTH``: werkzeug
        stops a chunked body at that limit and hands back the truncated bytes (a 400, not a
        413). ``wsgi.input`` counts what it gives out and raises a 413
        :class:`~common.problems.Problem` from the read, for the app's handlers to render."""
        if settings.middleware != "pure":  # SPEC §6: BaseHTTPMiddleware is Starlette's style
            raise SettingsError("LAB_MIDDLEWARE=basehttp is FastAPI's (Starlette's style)")
        self.app = app
        self.settings = settings

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        response = _Response(self, started)
        declared = environ.get("CONTENT_LENGTH", "")
        length = int(declared) if declared.isdigit() else None
        if "wsgi.input" in environ:
            environ["wsgi.input"] = LimitedInput(environ["wsgi.input"], length)
        # HEAD: the app returns no body (werkzeug keeps GET's Content-Length), so there is
        # nothing to compress; the head goes out as the app wrote it, plus Vary.
        coding = None
        if environ.get("REQUEST_METHOD") != "HEAD":
            coding = negotiation.best_encoding(environ.get("HTTP_ACCEPT_ENCODING"))
        body = self.app(environ, response.start_response)
        out = response.finish(body, coding, start_response)
        if (sock := environ.get("gunicorn.socket")) is not None:
            # gunicorn hands the app its socket: a timeout bounds each of the server's writes
            # of this response (common/stall.py), so a client that stops reading frees the
            # worker's thread. Set once the body is read; gunicorn resets it on reuse.
            sock.settimeout(self.settings.write_timeout_s)
        if not self.settings.access_log:
            return out
        # LAB_ACCESS_LOG=on (SPEC §6): logged when the server closes the body, i.e. once sent.
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        status = int(response.status[:3]) if response.status else 500

        def logged() -> None:
            log_access(method, path, status, (time.perf_counter() - started) * 1000)

        return _Chained([], iter(out), out, after=logged)


class _Response:
    """Per-request state: the head the app gave ``start_response``, held until the app has
    returned its body and the middleware knows whether that body is whole or streamed."""

    __slots__ = ("headers", "mw", "sent", "started", "status", "written")

    def __init__(self, mw: LabWSGIMiddleware, started: float) -> None:
        self.mw = mw
        self.started = started
        self.status: str | None = None
        self.headers: Headers = []
        self.written: list[bytes] = []  # PEP 3333's legacy write(), kept in order
        self.sent = False

    def start_response(
        self, status: str, headers: Headers, exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        if exc_info is not None and exc_info[1] is not None and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])  # too late to change the head
        if self.mw.settings.timing:
            headers = [*headers, ("Server-Timing", server_timing(self.started))]
        self.status, self.headers = status, headers
        return self.written.append

    def finish(
        self, body: Iterable[bytes], coding: str | None, start_response: StartResponse
    ) -> Iterable[bytes]:
        if self.status is None:
            # The app calls start_response on the first iteration (PEP 3333 allows it):
            # pull that chunk now, since the head must be known before the body.
            iterator = iter(body)
            first = next(iterator, b"")
            body = _Chained([first], iterator, body)
            if self.status is None:
                raise RuntimeError("the WSGI application never called start_response")
        if self.written:
            body = _Chained(self.written, iter(body), body)
        settings = self.mw.settings
        status, headers = self.status, self.headers
        media_type = content_encoding = vary = None
        length: int | None = None
        for key, value in headers:
            name = key.lower()
            if name == "content-type":
                media_type = value
            elif name == "content-encoding":
                content_encoding = value
            elif name == "content-length" and value.isdigit():
                length = int(value)
            elif name == "vary":
                vary = value
        if length is None and isinstance(body, list | tuple):
            length = sum(len(chunk) for chunk in body)
        if compression.is_compressible(media_type):
            headers = [h for h in headers if h[0].lower() != "vary"]
            headers.append(("Vary", compression.merge_vary(vary, "Accept-Encoding")))
        chosen = (
            coding
            if compression.should_compress(
                coding=coding,
                media_type=media_type,
                status=int(status[:3]),
                content_encoding=content_encoding,
                length=length,
                min_size=settings.compression_min_size,
            )
            else None
        )
        if chosen is None:
            self._send(start_response, status, headers)
            return body
        headers = [h for h in headers if h[0].lower() != "content-length"]
        headers.append(("Content-Encoding", chosen))
        if length is None:
            self._send(start_response, status, headers)
            return _EncodedBody(body, compression.new_encoder(chosen, settings))
        try:
            whole = b"".join(body)
        finally:
            _close(body)
        compressed = compression.compress_body(chosen, whole, settings)
        headers.append(("Content-Length", str(len(compressed))))
        self._send(start_response, status, headers)
        return [compressed]

    def _send(self, start_response: StartResponse, status: str, headers: Headers) -> None:
        self.sent = True
        start_response(status, headers)


def _close(iterable: Iterable[bytes]) -> None:
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


class _EncodedBody:
    """A streamed body, compressed chunk by chunk with a flush after each (SPEC §2.3).
    ``close()`` closes the app's iterable, so a generator's ``finally`` runs when the
    client goes away (PEP 3333)."""

    __slots__ = ("_body", "_encoder")

    def __init__(self, body: Iterable[bytes], encoder: compression.Encoder) -> None:
        self._body = body
        self._encoder = encoder

    def __iter__(self) -> Iterator[bytes]:
        encoder = self._encoder
        for chunk in self._body:
            # An empty chunk in gives an empty chunk out: never hold one back (PEP 3333).
            yield encoder.compress(chunk)
        yield encoder.finish()

    def close(self) -> None:
        _close(self._body)


class _Chained:
    """``head`` chunks, then the rest of ``iterator``; ``close()`` closes ``source``, then
    calls ``after`` (the access log's hook)."""

    __slots__ = ("_after", "_head", "_iterator", "_source")

    def __init__(
        self,
        head: list[bytes],
        iterator: Iterator[bytes],
        source: Iterable[bytes],
        after: Callable[[], None] | None = None,
    ) -> None:
        self._head = head
        self._iterator = iterator
        self._source = source
        self._after = after

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        yield from self._iterator

    def close(self) -> None:
        try:
            _close(self._source)
        finally:
            if self._after is not None:
                self._after()


class LimitedInput:
    """``wsgi.input`` that enforces the body limit as the app reads: a declared
    ``Content-Length`` over the limit fails the first read before any byte is taken, and a
    body without one (chunked) fails the read that goes past the limit. Both raise the 413
    problem."""

    __slots__ = ("_declared", "_input", "_limit", "_read")

    def __init__(
        self, stream: IO[bytes], declared: int | None = None, limit: int = MAX_BODY_BYTES
    ) -> None:
        self._input = stream
        self._declared = declared
        self._limit = limit
        self._read = 0

    def _room(self) -> int:
        """How much may still be read: one byte past the limit, so going over is seen."""
        if self._declared is not None and self._declared > self._limit:
            raise payload_too_large(self._limit)
        return self._limit - self._read + 1

    def _count(self, data: bytes) -> bytes:
        self._read += len(data)
        if self._read > self._limit:
            raise payload_too_large(self._limit)
        return data

    def read(self, size: int | None = -1) -> bytes:
        room = self._room()
        if size is None or size < 0:
            # Bounded pieces: an endless body stops one byte past the limit, not in memory.
            parts = []
            while chunk := self._input.read(min(64 * 1024, room)):
                parts.append(self._count(chunk))
                room = self._room()
            return b"".join(parts)
        return self._count(self._input.read(min(size, room)))

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        room = self._room()
        return self._count(
            self._input.readline(room if size is None or size < 0 else min(size, room))
        )

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._input, name)

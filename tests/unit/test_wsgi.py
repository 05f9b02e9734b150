"""The WSGI middleware (SPEC §2.2, §2.3, §2.1's 413) against tiny WSGI apps, no server."""

from __future__ import annotations

import dataclasses
import io
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import brotli
import pytest
import zstandard

from common.problems import MAX_BODY_BYTES, Problem
from common.settings import Settings
from common.wsgi import LabWSGIMiddleware, LimitedInput

SETTINGS = Settings(database_url="", redis_url="", upstream_url="")
BIG = b'{"text": "' + b"compressible " * 200 + b'"}'  # 2.6 kB, over the 1000-byte threshold


def decoder(coding: str) -> Callable[[bytes], bytes]:
    """A streaming decoder: fed chunk by chunk, returns what each chunk completes."""
    decompress: Callable[[bytes], bytes]
    if coding == "gzip":
        decompress = zlib.decompressobj(wbits=31).decompress
    elif coding == "br":
        decompress = brotli.Decompressor().process
    else:
        decompress = zstandard.ZstdDecompressor().decompressobj().decompress
    return decompress


@dataclasses.dataclass
class Result:
    status: str
    headers: dict[str, str]
    chunks: list[bytes]
    raw_headers: list[tuple[str, str]]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class Closing:
    """An app iterable that records whether the server (through the middleware) closed it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


def whole_app(
    body: bytes,
    media_type: str = "application/json",
    status: str = "200 OK",
    extra: list[tuple[str, str]] | None = None,
) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        headers = [("Content-Type", media_type), ("Content-Length", str(len(body)))]
        start_response(status, headers + (extra or []))
        return Closing([body])

    return app


def stream_app(
    chunks: list[bytes], media_type: str = "application/x-ndjson", sink: list[Closing] | None = None
) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", media_type)])
        body = Closing(chunks)
        if sink is not None:
            sink.append(body)
        return body

    return app


def call(
    app: Any,
    *,
    settings: Settings = SETTINGS,
    method: str = "GET",
    accept_encoding: str | None = None,
    body: bytes = b"",
    content_length: str | None = None,
) -> Result:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(body),
    }
    if accept_encoding is not None:
        environ["HTTP_ACCEPT_ENCODING"] = accept_encoding
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((status, headers))
        return lambda data: None

    mw = LabWSGIMiddleware(app, settings)
    iterable = mw(environ, start_response)
    assert len(seen) == 1, "start_response must be called once, before the body is iterated"
    try:
        chunks = list(iterable)
    finally:
        getattr(iterable, "close", lambda: None)()
    status, headers = seen[0]
    return Result(status, {k.lower(): v for k, v in headers}, chunks, headers)


# -- Compression of whole bodies -------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_whole_body_round_trip(coding: str) -> None:
    result = call(whole_app(BIG), accept_encoding=coding)
    assert result.headers["content-encoding"] == coding
    assert result.headers["content-length"] == str(len(result.body))
    assert len(result.chunks) == 1, "a whole body is compressed in one shot"
    assert decoder(coding)(result.body) == BIG
    assert result.headers["vary"] == "Accept-Encoding"


def test_whole_body_list_without_content_length_is_whole() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [BIG[:100], BIG[100:]]

    result = call(app, accept_encoding="gzip")
    assert result.headers["content-length"] == str(len(result.body))
    assert zlib.decompress(result.body, wbits=31) == BIG


@pytest.mark.parametrize(
    ("size", "min_size", "compressed"),
    [(999, 1000, False), (1000, 1000, True), (10, 0, True), (5000, 6000, False)],
)
def test_threshold(size: int, min_size: int, compressed: bool) -> None:
    settings = dataclasses.replace(SETTINGS, compression_min_size=min_size)
    body = b"a" * size
    result = call(whole_app(body), settings=settings, accept_encoding="gzip")
    assert ("content-encoding" in result.headers) is compressed
    assert result.headers["vary"] == "Accept-Encoding"
    if not compressed:
        assert result.body == body
        assert result.headers["content-length"] == str(size)


@pytest.mark.parametrize(
    "accept_encoding", [None, "", "identity", "gzip;q=0, br;q=0, zstd;q=0", "compress"]
)
def test_nothing_acceptable_is_identity(accept_encoding: str | None) -> None:
    result = call(whole_app(BIG), accept_encoding=accept_encoding)
    assert "content-encoding" not in result.headers
    assert result.body == BIG
    assert result.headers["vary"] == "Accept-Encoding"


def test_negotiation_prefers_zstd_on_a_tie() -> None:
    result = call(whole_app(BIG), accept_encoding="gzip, br, zstd")
    assert result.headers["content-encoding"] == "zstd"


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses_untouched(status: str) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, [("ETag", '"x"')])
        return []

    result = call(app, accept_encoding="gzip")
    assert "content-encoding" not in result.headers
    assert result.body == b""


def test_never_double_encodes() -> None:
    already = zlib.compress(BIG, wbits=31)
    app = whole_app(already, extra=[("Content-Encoding", "gzip")])
    result = call(app, accept_encoding="br")
    assert result.headers["content-encoding"] == "gzip"
    assert result.body == already


def test_head_is_not_compressed() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BIG)))]
        )
        return []  # werkzeug: no body for HEAD, GET's Content-Length kept

    result = call(app, method="HEAD", accept_encoding="gzip")
    assert "content-encoding" not in result.headers
    assert result.headers["content-length"] == str(len(BIG))
    assert result.headers["vary"] == "Accept-Encoding"


# -- Compression of streamed bodies ----------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_streamed_round_trip_flushes_each_chunk(coding: str) -> None:
    chunks = [b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * i) for i in range(20)]
    opened: list[Closing] = []
    result = call(stream_app(chunks, sink=opened), accept_encoding=coding)
    assert result.headers["content-encoding"] == coding
    assert "content-length" not in result.headers
    assert result.headers["vary"] == "Accept-Encoding"
    decode = decoder(coding)
    # Each compressed chunk decodes, on its own, to the chunk that went in (flushed).
    for original, compressed in zip(chunks, result.chunks, strict=False):
        assert decode(compressed) == original
    decode(b"".join(result.chunks[len(chunks) :]))
    assert opened[0].closed


def test_small_stream_is_still_compressed() -> None:
    result = call(stream_app([b"tiny"]), accept_encoding="gzip")
    assert result.headers["content-encoding"] == "gzip"
    assert zlib.decompress(result.body, wbits=31) == b"tiny"


def test_streamed_close_reaches_the_app_when_the_client_goes_away() -> None:
    released: list[str] = []

    def generate() -> Iterator[bytes]:
        try:
            for i in range(1000):
                yield b"row %d\n" % i
        finally:
            released.append("connection")

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/csv")])
        return generate()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return lambda data: None

    environ = {"REQUEST_METHOD": "GET", "HTTP_ACCEPT_ENCODING": "gzip", "wsgi.input": io.BytesIO()}
    iterable = LabWSGIMiddleware(app, SETTINGS)(environ, start_response)
    iterator = iter(iterable)
    next(iterator)
    next(iterator)
    iterable.close()  # type: ignore[attr-defined]
    assert released == ["connection"]


def test_lazy_start_response() -> None:
    """PEP 3333 lets an app call start_response on its first iteration."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        yield BIG[:500]
        yield BIG[500:]

    result = call(app, accept_encoding="gzip")
    assert result.headers["content-encoding"] == "gzip"
    assert zlib.decompress(result.body, wbits=31) == BIG


def test_legacy_write_comes_first() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned"]

    assert call(app).body == b"written returned"


# -- Server-sent events, Vary ---------------------------------------------------------------


def test_event_stream_untouched() -> None:
    events = [b'id: %d\ndata: {"seq": %d}\n\n' % (i, i) for i in range(1, 4)]
    result = call(stream_app(events, "text/event-stream"), accept_encoding="gzip, br, zstd")
    assert "content-encoding" not in result.headers
    assert "vary" not in result.headers
    assert result.chunks == events, "each event passes through as its own chunk"


def test_vary_merges_with_the_apps_own() -> None:
    app = whole_app(b"{}", extra=[("Vary", "Accept")])
    result = call(app, accept_encoding="gzip")
    assert [v for k, v in result.raw_headers if k.lower() == "vary"] == ["Accept, Accept-Encoding"]


def test_vary_not_repeated() -> None:
    app = whole_app(b"{}", extra=[("Vary", "accept-encoding")])
    result = call(app)
    assert result.headers["vary"] == "accept-encoding"


# -- Server-Timing, Server, Date -------------------------------------------------------------


def test_server_timing() -> None:
    result = call(whole_app(b"{}"))
    assert re.fullmatch(r"app;dur=\d+\.\d{3}", result.headers["server-timing"])
    assert "server" not in result.headers
    assert "date" not in result.headers


# -- The 64 KiB body limit -------------------------------------------------------------------


def reading_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Reads the whole body as a framework would; a Problem becomes its response."""
    try:
        data = environ["wsgi.input"].read()
    except Problem as problem:
        body = problem.body()
        start_response(
            f"{problem.status} {problem.title}",
            [("Content-Type", "application/problem+json"), ("Content-Length", str(len(body)))],
        )
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [b"%d" % len(data)]


def test_413_for_a_chunked_body_counted_while_read() -> None:
    result = call(reading_app, body=b"x" * (MAX_BODY_BYTES + 1))  # no Content-Length
    assert result.status.startswith("413 ")


def test_body_at_the_limit_passes() -> None:
    result = call(reading_app, body=b"x" * MAX_BODY_BYTES, content_length=str(MAX_BODY_BYTES))
    assert result.status.startswith("200 ")
    assert result.body == b"%d" % MAX_BODY_BYTES


def test_declared_length_checked_on_first_read() -> None:
    """The app runs (its routing answers first), and its first read of the body raises the
    413 before any byte is taken; the problem still gets Server-Timing and Vary."""
    ran: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ran.append("app")
        return reading_app(environ, start_response)

    result = call(
        app, body=b"x" * 10, content_length=str(MAX_BODY_BYTES + 1), accept_encoding="gzip"
    )
    assert ran == ["app"]
    assert result.status.startswith("413 ")
    assert result.headers["content-type"] == "application/problem+json"
    assert b"urn:lab:problem:payload-too-large" in result.body
    assert "server-timing" in result.headers
    assert result.headers["vary"] == "Accept-Encoding"


def test_app_that_never_reads_is_not_refused() -> None:
    result = call(whole_app(b"{}"), body=b"x" * 70_000, content_length="70000")
    assert result.status.startswith("200 ")


def _read_all(stream: Any) -> None:
    stream.read()


def _readinto(stream: Any) -> None:
    buffer = bytearray(MAX_BODY_BYTES * 2)
    while stream.readinto(buffer):
        pass


def _read_sized(stream: Any) -> None:
    while stream.read(1000):
        pass


@pytest.mark.parametrize(
    "reader",
    [_read_all, _readinto, _read_sized, lambda s: s.readline(), list, lambda s: s.readlines()],
)
def test_every_way_of_reading_is_counted(reader: Callable[[Any], object]) -> None:
    stream = LimitedInput(io.BytesIO(b"x" * (MAX_BODY_BYTES + 10)))
    with pytest.raises(Problem) as caught:
        reader(stream)
    assert caught.value.status == 413


def test_werkzeug_reads_a_chunked_body_through_the_limit() -> None:
    """werkzeug with MAX_CONTENT_LENGTH truncates a chunked body at the limit instead of
    failing; without it, werkzeug reads ``wsgi.input`` as is, and the count sees the excess."""
    from werkzeug.wrappers import Request

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input_terminated"] = True
        try:
            data = Request(environ).get_data()
        except Problem as problem:
            start_response(f"{problem.status} {problem.title}", [])
            return []
        start_response("200 OK", [])
        return [b"%d" % len(data)]

    over = call(app, body=b"x" * (MAX_BODY_BYTES + 1))
    assert over.status.startswith("413 ")
    exact = call(app, body=b"x" * MAX_BODY_BYTES)
    assert exact.body == b"%d" % MAX_BODY_BYTES

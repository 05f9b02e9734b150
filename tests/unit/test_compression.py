"""Codecs and the compression rules (SPEC §2.3)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from common.compression import (
    CODINGS,
    compress_body,
    is_compressible,
    merge_vary,
    new_encoder,
    should_compress,
)
from common.settings import Settings

SETTINGS = Settings(database_url="", redis_url="", upstream_url="")
BODY = b'{"id": 1, "name": "widget", "price": 9.99}\n' * 400


class _Stream:
    """An incremental decoder per coding, to read output before the encoder finishes."""

    def __init__(self, coding: str) -> None:
        self.decode: Callable[[bytes], bytes]
        if coding == "gzip":
            self.decode = zlib.decompressobj(31).decompress
        elif coding == "br":
            self.decode = brotli.Decompressor().process
        else:
            self.decode = zstandard.ZstdDecompressor().decompressobj().decompress


def _one_shot_decode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "br":
        return bytes(brotli.decompress(data))
    return _Stream("zstd").decode(data)


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("body", [b"", b"x", BODY, bytes(range(256)) * 50])
def test_compress_body_round_trips(coding: str, body: bytes) -> None:
    assert _one_shot_decode(coding, compress_body(coding, body, SETTINGS)) == body


@pytest.mark.parametrize("coding", CODINGS)
def test_compress_body_shrinks_repetitive_json(coding: str) -> None:
    assert len(compress_body(coding, BODY, SETTINGS)) < len(BODY) // 10


def test_gzip_is_a_real_gzip_member() -> None:
    out = compress_body("gzip", BODY, SETTINGS)
    assert out[:3] == b"\x1f\x8b\x08"  # magic + deflate
    streamed = new_encoder("gzip", SETTINGS)
    assert (streamed.compress(BODY) + streamed.finish())[:2] == b"\x1f\x8b"


def test_gzip_level_comes_from_settings() -> None:
    # RFC 1952's XFL byte records "maximum compression" (2) or "fastest" (4).
    fast = Settings(database_url="", redis_url="", upstream_url="", gzip_level=1)
    best = Settings(database_url="", redis_url="", upstream_url="", gzip_level=9)
    assert compress_body("gzip", BODY, fast)[8] == 4
    assert compress_body("gzip", BODY, best)[8] == 2


@pytest.mark.parametrize(
    ("coding", "field", "low", "high"), [("br", "br_level", 0, 11), ("zstd", "zstd_level", 1, 19)]
)
def test_levels_come_from_settings(coding: str, field: str, low: int, high: int) -> None:
    text = b" ".join(b"%d" % (i * 7919 % 10007) for i in range(20000))
    fast = Settings(database_url="", redis_url="", upstream_url="", **{field: low})  # type: ignore[arg-type]
    best = Settings(database_url="", redis_url="", upstream_url="", **{field: high})  # type: ignore[arg-type]
    assert len(compress_body(coding, text, best)) < len(compress_body(coding, text, fast))
    stream_fast, stream_best = new_encoder(coding, fast), new_encoder(coding, best)
    assert len(stream_best.compress(text)) < len(stream_fast.compress(text))


@pytest.mark.parametrize("coding", CODINGS)
def test_each_chunk_is_readable_before_finish(coding: str) -> None:
    encoder = new_encoder(coding, SETTINGS)
    decoder = _Stream(coding)
    for i in range(5):
        chunk = b'{"seq": %d, "payload": "%s"}\n' % (i, b"abc" * i)
        # flushed: the decoder yields exactly this chunk with nothing held back
        assert decoder.decode(encoder.compress(chunk)) == chunk
    assert decoder.decode(encoder.finish()) == b""


@pytest.mark.parametrize("coding", CODINGS)
def test_streamed_body_equals_one_shot_decode(coding: str) -> None:
    encoder = new_encoder(coding, SETTINGS)
    chunks = [BODY[i : i + 777] for i in range(0, len(BODY), 777)]
    out = b"".join(encoder.compress(c) for c in chunks) + encoder.finish()
    assert _one_shot_decode(coding, out) == BODY


@pytest.mark.parametrize("coding", CODINGS)
def test_empty_chunks_emit_nothing_and_empty_stream_is_valid(coding: str) -> None:
    encoder = new_encoder(coding, SETTINGS)
    assert encoder.compress(b"") == b""
    tail = encoder.finish()
    assert tail  # a complete, empty stream still has a header/trailer
    assert _Stream(coding).decode(tail) == b""


@pytest.mark.parametrize("coding", CODINGS)
def test_interleaved_streams_do_not_share_state(coding: str) -> None:
    a, b = new_encoder(coding, SETTINGS), new_encoder(coding, SETTINGS)
    out_a, out_b = [], []
    for i in range(20):
        out_a.append(a.compress(b"a%d," % i))
        out_b.append(b.compress(b"b%d," % i))
    out_a.append(a.finish())
    out_b.append(b.finish())
    assert _Stream(coding).decode(b"".join(out_a)) == b"".join(b"a%d," % i for i in range(20))
    assert _Stream(coding).decode(b"".join(out_b)) == b"".join(b"b%d," % i for i in range(20))


@pytest.mark.parametrize("coding", CODINGS)
@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.binary(max_size=3000), max_size=12))
def test_streaming_round_trip_property(coding: str, chunks: list[bytes]) -> None:
    encoder = new_encoder(coding, SETTINGS)
    decoder = _Stream(coding)
    seen = b""
    for i, chunk in enumerate(chunks):
        seen += decoder.decode(encoder.compress(chunk))
        assert seen == b"".join(chunks[: i + 1])  # flushed: nothing held back
    seen += decoder.decode(encoder.finish())
    assert seen == b"".join(chunks)


@pytest.mark.parametrize("coding", CODINGS)
@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5000))
def test_one_shot_round_trip_property(coding: str, data: bytes) -> None:
    assert _one_shot_decode(coding, compress_body(coding, data, SETTINGS)) == data


def test_unknown_coding_is_an_error() -> None:
    with pytest.raises(ValueError, match="deflate"):
        new_encoder("deflate", SETTINGS)
    with pytest.raises(ValueError, match="identity"):
        compress_body("identity", b"x", SETTINGS)


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        ("application/json", True),
        ("application/problem+json", True),
        ("application/x-ndjson", True),
        ("text/csv; charset=utf-8", True),
        ("application/xml; charset=utf-8", True),
        ("application/yaml", True),
        ("application/msgpack", True),
        ("text/plain", True),
        ("text/html; charset=utf-8", True),
        ("image/svg+xml", True),
        (None, True),
        ("", True),
        ("text/event-stream", False),
        ("Text/Event-Stream; charset=utf-8", False),
        ("image/png", False),
        ("image/jpeg", False),
        ("video/mp4", False),
        ("audio/ogg", False),
        ("font/woff2", False),
        ("application/zip", False),
        ("application/gzip", False),
        ("application/zstd", False),
    ],
)
def test_is_compressible(media_type: str | None, expected: bool) -> None:
    assert is_compressible(media_type) is expected


@pytest.mark.parametrize(
    ("existing", "names", "expected"),
    [
        (None, ("Accept-Encoding",), "Accept-Encoding"),
        ("", ("Accept-Encoding",), "Accept-Encoding"),
        ("Accept", ("Accept-Encoding",), "Accept, Accept-Encoding"),
        ("accept-encoding", ("Accept-Encoding",), "accept-encoding"),
        ("Accept,  Accept-Encoding", ("accept", "ACCEPT-ENCODING"), "Accept, Accept-Encoding"),
        (None, ("Accept", "Accept-Encoding", "accept"), "Accept, Accept-Encoding"),
        ("Origin,,", ("Accept",), "Origin, Accept"),
        ("*", ("Accept-Encoding",), "*"),
        ("Accept", (), "Accept"),
    ],
)
def test_merge_vary(existing: str | None, names: tuple[str, ...], expected: str) -> None:
    assert merge_vary(existing, *names) == expected


_OK = {
    "coding": "gzip",
    "media_type": "application/json",
    "status": 200,
    "content_encoding": None,
    "length": 5000,
    "min_size": 1000,
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, True),
        ({"coding": None}, False),
        ({"media_type": "text/event-stream"}, False),
        ({"media_type": "image/png"}, False),
        ({"media_type": "application/problem+json", "status": 404}, True),
        ({"status": 204}, False),
        ({"status": 304}, False),
        ({"status": 101}, False),
        ({"status": 201}, True),
        ({"content_encoding": "br"}, False),
        ({"content_encoding": "identity"}, True),
        ({"length": 999}, False),
        ({"length": 1000}, True),
        ({"length": 0}, False),
        ({"length": None}, True),  # streamed: length unknown
        ({"length": None, "media_type": "text/event-stream"}, False),
        ({"length": 10, "min_size": 0}, True),
    ],
)
def test_should_compress(change: dict[str, object], expected: bool) -> None:
    assert should_compress(**{**_OK, **change}) is expected  # type: ignore[arg-type]

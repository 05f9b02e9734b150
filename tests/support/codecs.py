"""Decoders for the content codings of SPEC §2.3, applied by the tests themselves so that a
test sees exactly the bytes on the wire (httpx would decode silently)."""

from __future__ import annotations

import io
import zlib

import brotli
import zstandard

__all__ = ["decode"]


def _gunzip(data: bytes) -> bytes:
    out = []
    while data:
        dec = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out.append(dec.decompress(data))
        out.append(dec.flush())
        if not dec.eof:
            raise ValueError("truncated gzip stream")
        data = dec.unused_data  # a further gzip member, if any
    return b"".join(out)


def _unzstd(data: bytes) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    return reader.read()


def decode(data: bytes, coding: str | None) -> bytes:
    """``data`` decoded from ``coding`` (``None``/``identity`` → unchanged)."""
    coding = (coding or "identity").strip().lower()
    if coding == "identity":
        return data
    if coding in {"gzip", "x-gzip"}:
        return _gunzip(data)
    if coding == "br":
        return brotli.decompress(data)
    if coding == "zstd":
        return _unzstd(data)
    raise ValueError(f"unknown content coding {coding!r}")

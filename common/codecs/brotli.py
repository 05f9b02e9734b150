"""Brotli (RFC 7932) through the ``brotli`` package's ``Compressor``."""

from __future__ import annotations

import brotli

__all__ = ["BrotliEncoder", "compress"]


class BrotliEncoder:
    __slots__ = ("_c",)

    def __init__(self, level: int) -> None:
        self._c = brotli.Compressor(quality=level)

    def compress(self, data: bytes) -> bytes:
        if not data:
            return b""
        c = self._c
        return bytes(c.process(data) + c.flush())

    def finish(self) -> bytes:
        return bytes(self._c.finish())


def compress(data: bytes, level: int) -> bytes:
    return bytes(brotli.compress(data, quality=level))

"""gzip (RFC 1952) through zlib with ``wbits=31``: a real gzip member, not raw deflate."""

from __future__ import annotations

import zlib

__all__ = ["GzipEncoder", "compress"]

_GZIP_WBITS = 31  # 16 (gzip header and trailer) + 15 (32 KiB window)


class GzipEncoder:
    __slots__ = ("_z",)

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)

    def compress(self, data: bytes) -> bytes:
        if not data:  # a sync flush of nothing would still emit 5 bytes
            return b""
        z = self._z
        return z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


def compress(data: bytes, level: int) -> bytes:
    return zlib.compress(data, level, wbits=_GZIP_WBITS)

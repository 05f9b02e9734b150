"""When and how to compress a response (SPEC §2.3), free of any framework.

Adapters ask ``negotiation.best_encoding`` for a coding, ``should_compress`` whether to
use it, then call ``compress_body`` for a whole body or ``new_encoder`` for a stream.
"""

from __future__ import annotations

from functools import lru_cache

from .codecs import Encoder
from .codecs import brotli as _brotli
from .codecs import gzip as _gzip
from .codecs import zstd as _zstd
from .settings import Settings

__all__ = [
    "CODINGS",
    "Encoder",
    "compress_body",
    "is_compressible",
    "merge_vary",
    "new_encoder",
    "should_compress",
]

CODINGS: tuple[str, ...] = ("zstd", "br", "gzip")  # SPEC §2.3 tie order

# Already-compressed payloads gain nothing; event streams must reach the client unbuffered.
_INCOMPRESSIBLE_PREFIXES = ("image/", "audio/", "video/", "font/woff")
_INCOMPRESSIBLE = frozenset(
    {
        "text/event-stream",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/zstd",
        "application/x-bzip2",
        "application/x-xz",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/vnd.rar",
        "application/x-brotli",
    }
)
_COMPRESSIBLE_IMAGES = frozenset({"image/svg+xml", "image/x-icon", "image/bmp"})


def new_encoder(coding: str, settings: Settings) -> Encoder:
    """A streaming encoder for one body; levels come from settings (SPEC §2.3)."""
    if coding == "zstd":
        return _zstd.ZstdEncoder(settings.zstd_level)
    if coding == "br":
        return _brotli.BrotliEncoder(settings.br_level)
    if coding == "gzip":
        return _gzip.GzipEncoder(settings.gzip_level)
    raise ValueError(f"unsupported content coding {coding!r}")


def compress_body(coding: str, data: bytes, settings: Settings) -> bytes:
    """One-shot compression of a whole body (no per-chunk flush overhead)."""
    if coding == "zstd":
        return _zstd.compress(data, settings.zstd_level)
    if coding == "br":
        return _brotli.compress(data, settings.br_level)
    if coding == "gzip":
        return _gzip.compress(data, settings.gzip_level)
    raise ValueError(f"unsupported content coding {coding!r}")


@lru_cache(maxsize=128)
def is_compressible(media_type: str | None) -> bool:
    """False for event streams and payloads that are compressed already; True otherwise
    (JSON, problem+json, NDJSON, CSV, XML, YAML, text/*, msgpack, and unknown types)."""
    if not media_type:
        return True
    essence = media_type.partition(";")[0].strip().lower()
    if essence in _INCOMPRESSIBLE:
        return False
    return essence in _COMPRESSIBLE_IMAGES or not essence.startswith(_INCOMPRESSIBLE_PREFIXES)


def merge_vary(existing: str | None, *names: str) -> str:
    """``existing`` plus ``names``, each once (field names compare case-insensitively)."""
    fields = [f.strip() for f in existing.split(",") if f.strip()] if existing else []
    if "*" in fields:  # "Vary: *" already varies on everything
        return "*"
    seen = {f.lower() for f in fields}
    for name in names:
        key = name.lower()
        if key not in seen:
            seen.add(key)
            fields.append(name)
    return ", ".join(fields)


def should_compress(
    *,
    coding: str | None,
    media_type: str | None,
    status: int,
    content_encoding: str | None,
    length: int | None,
    min_size: int,
) -> bool:
    """SPEC §2.3. ``length`` None means streamed: compressed whatever its eventual size."""
    if coding is None or status in (204, 304) or status < 200:
        return False
    if content_encoding and content_encoding.strip().lower() != "identity":
        return False
    if not is_compressible(media_type):
        return False
    return length is None or length >= min_size

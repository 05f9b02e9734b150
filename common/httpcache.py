"""HTTP validators for the cache-aside endpoint (SPEC §3.6): strong ETags, weak matching."""

from __future__ import annotations

import re
from hashlib import blake2b

from .headercache import header_cache

__all__ = ["cache_headers", "etag_for", "if_none_match"]

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc excludes only DQUOTE, so a tag may hold
# commas and the list is scanned for tags rather than split on ",".
_ETAG = re.compile(r'(?:W/)?"([^"]*)"')


def etag_for(body: bytes) -> str:
    """A strong validator: 128-bit BLAKE2b of the exact body bytes, quoted."""
    return '"' + blake2b(body, digest_size=16).hexdigest() + '"'


@header_cache(maxsize=1024)
def _tags(header: str) -> frozenset[str] | None:
    """Opaque tags of an If-None-Match list (``W/`` dropped), or None for ``*``.
    Text that is not an entity tag is ignored."""
    if header.strip(" \t") == "*":
        return None
    return frozenset(_ETAG.findall(header))


def if_none_match(header: str | None, etag: str) -> bool:
    """True when the request's If-None-Match matches ``etag`` (RFC 9110 §13.1.2: ``*``
    matches any current representation; otherwise weak comparison)."""
    if not header:
        return False
    tags = _tags(header)
    if tags is None:
        return True
    opaque = etag[2:] if etag.startswith("W/") else etag
    return opaque[1:-1] in tags


def cache_headers(etag: str | None, ttl_s: int, x_cache: str) -> dict[str, str]:
    """``etag`` None: no validator (``LAB_HTTP_CACHE=off``)."""
    headers = {"Cache-Control": f"public, max-age={ttl_s}", "X-Cache": x_cache}
    if etag is not None:
        headers["ETag"] = etag
    return headers

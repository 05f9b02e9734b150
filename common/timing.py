"""SPEC §2.2's ``Server-Timing: app;dur=<ms>``: the one place its value is formatted, for
every stack (ASGI, WSGI, aiohttp, Starlette's ``BaseHTTPMiddleware`` variant)."""

from __future__ import annotations

import time

__all__ = ["server_timing", "server_timing_bytes"]

_FORMAT = "app;dur=%.3f"  # milliseconds with three decimals
_FORMAT_BYTES = _FORMAT.encode()


def server_timing(started: float) -> str:
    """The header's value for a span that began at ``started`` (a ``time.perf_counter()``)."""
    return _FORMAT % ((time.perf_counter() - started) * 1000)


def server_timing_bytes(started: float) -> bytes:
    """The same value as bytes, for an ASGI head: no ``encode`` on the hot path."""
    return _FORMAT_BYTES % ((time.perf_counter() - started) * 1000)

"""Distinct client identities for limiter tests (SPEC §3.7 keys clients by address).

Loopback is all of 127.0.0.0/8 on Linux, so a client socket bound to ``127.a.b.c`` is a
different peer to the server. The starting point is random per session so a re-run inside the
limiter's window does not meet its own earlier counters.
"""

from __future__ import annotations

import itertools
import secrets

__all__ = ["fresh_forwarded", "fresh_loopback"]

_COUNTER = itertools.count(secrets.randbelow(1 << 20))


def _spread(n: int) -> tuple[int, int, int]:
    return (n >> 16) % 254 + 1, (n >> 8) % 256, n % 254 + 1


def fresh_loopback() -> str:
    """A loopback address no earlier call returned (never 127.0.0.1)."""
    a, b, c = _spread(next(_COUNTER))
    return f"127.{a}.{b}.{c}"


def fresh_forwarded() -> str:
    """An address from the benchmarking range 198.18.0.0/15 (RFC 2544) for
    ``X-Forwarded-For``, unique per call."""
    a, b, c = _spread(next(_COUNTER))
    return f"198.{18 + a % 2}.{b}.{c}"

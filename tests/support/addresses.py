"""Distinct client identities for limiter tests (SPEC §3.7 keys clients by address).

Loopback is all of 127.0.0.0/8 on Linux, so a client socket bound to ``127.a.b.c`` is a
different peer to the server. The starting point is random per session so a re-run inside the
limiter's window does not meet its own earlier counters; under pytest-xdist each worker draws
from a slice of its own, since the workers share one Redis.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator

__all__ = ["WORKER_SLICES", "fresh_forwarded", "fresh_loopback", "worker_index"]

WORKER_SLICES = 8  # of addresses and ports: enough for the suite's pytest-xdist workers


def worker_index() -> int:
    """This pytest-xdist worker's number (``gw3``: 3; 0 without workers), below 8."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0) % WORKER_SLICES


def _indices(space: int) -> Iterator[int]:
    """Distinct numbers below ``space`` from a random start, within this worker's slice."""
    share = space // WORKER_SLICES
    base, start = worker_index() * share, secrets.randbelow(share)
    return (base + (start + k) % share for k in itertools.count())


_LOOPBACK = _indices(254 * 256 * 254)  # 127.1-254.0-255.1-254: never 127.0.0.1
_FORWARDED = _indices(1 << 17)  # 198.18.0.0/15


def fresh_loopback() -> str:
    """A loopback address no earlier call returned (never 127.0.0.1)."""
    i = next(_LOOPBACK)
    return f"127.{i // (256 * 254) + 1}.{i // 254 % 256}.{i % 254 + 1}"


def fresh_forwarded() -> str:
    """An address from the benchmarking range 198.18.0.0/15 (RFC 2544) for
    ``X-Forwarded-For``, unique per call."""
    i = next(_FORWARDED)
    return f"198.{18 + (i >> 16)}.{i >> 8 & 255}.{i & 255}"

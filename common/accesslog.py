"""``LAB_ACCESS_LOG=on``: one structured line per request, through stdlib ``logging``.

The servers' own access logs are off in the matrix (each formats differently and some cannot
be turned on per experiment), so the lab's middleware writes its own: a JSON object per line
on stderr, ``{"method", "path", "status", "duration_ms"}``, the same for every pair. It is an
experiment switch (SPEC §6): the technique page measures what logging each request costs.
"""

from __future__ import annotations

import logging
import sys
from functools import cache

import orjson

__all__ = ["log_access"]


@cache
def _logger() -> logging.Logger:
    """A handler of its own, not propagated: the servers configure the root and their own
    loggers at WARNING, which would drop these INFO records or format them their way."""
    logger = logging.getLogger("lab.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def log_access(method: str, path: str, status: int, duration_ms: float) -> None:
    line = {"method": method, "path": path, "status": status, "duration_ms": round(duration_ms, 3)}
    _logger().info(orjson.dumps(line).decode())

"""A cache for pure functions of request header values, bounded in bytes as well as entries.

Headers repeat from request to request (every browser sends the same ``Accept``), so the
parsers of ``Accept``, ``Accept-Encoding``, ``If-None-Match`` and ``X-Forwarded-For`` cache
their answers by the raw value. ``functools.lru_cache`` bounds the entries, not their size:
a client that sends a different 8 KiB value each time would keep thousands of them alive.
Values longer than real clients send are computed and not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import lru_cache, wraps
from typing import Any, TypeVar, cast

__all__ = ["LONGEST_CACHED", "header_cache"]

F = TypeVar("F", bound=Callable[..., Any])

# Longer than any Accept or X-Forwarded-For a browser or a chain of proxies writes.
LONGEST_CACHED = 256


def header_cache(maxsize: int) -> Callable[[F], F]:
    """``lru_cache(maxsize)`` for calls (positional arguments only) whose text arguments are
    all at most ``LONGEST_CACHED`` long; longer ones are computed each time."""

    def decorate(fn: F) -> F:
        cached = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def call(*args: Hashable) -> Any:
            for arg in args:
                if isinstance(arg, str | bytes) and len(arg) > LONGEST_CACHED:
                    return fn(*args)
            return cached(*args)

        return cast(F, call)

    return decorate

"""``LAB_CACHE=local`` (SPEC §6): a per-worker, bounded, TTL cache of item bodies in front of
Redis, so a hot item costs no network round trip at all.

cachetools' ``TTLCache`` (a well-kept library rather than a hand-written LRU with expiry)
bounds the entries (``LAB_LOCAL_CACHE_SIZE``, least recently used evicted first) and the age
(``LAB_CACHE_TTL``, counted from when this worker stored the entry: a local copy can outlive
its Redis entry by up to one TTL, the staleness every two-level cache trades for speed).
``TTLCache`` is not thread-safe, so access is under a lock: uncontended on the event loop,
needed for the thread-per-request sync twin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cachetools import TTLCache

from .settings import Settings

__all__ = ["LocalCache"]


class LocalCache:
    __slots__ = ("_entries", "_lock")

    def __init__(
        self, maxsize: int, ttl_s: float, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: TTLCache[str, bytes] = TTLCache(maxsize=maxsize, ttl=ttl_s, timer=timer)
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalCache | None:
        """The worker's cache, or None unless ``LAB_CACHE=local``."""
        if settings.cache != "local":
            return None
        return cls(settings.local_cache_size, settings.cache_ttl_s)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, body: bytes) -> None:
        with self._lock:
            self._entries[key] = body

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

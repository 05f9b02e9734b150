"""Admission control: a bound on the requests one worker works on at once (``LAB_MAX_INFLIGHT``,
SPEC §6), so that past its capacity a worker answers the extra requests at once with a 503
instead of letting every request in and missing every deadline.

Why it matters is in docs/techniques/admission.md: under the ``aggregate`` scenario at 256
connections, a saturated worker accepts every request, each one's upstream calls wait behind
everyone else's, and their 1 s deadlines expire in the queue (docs/reliability.md, "A deadline
that counts the queue"). Shedding keeps the admitted requests few enough to finish in time.

The counter is plain integers, not a lock or an ``asyncio.Semaphore``: the async adapters
admit and release on their event loop's thread only, and a refused request must not wait
(a semaphore's ``acquire`` queues, which is what the bound is there to prevent). Flask's
workers are threads of its server, whose own pool already bounds what is in flight; Flask
refuses the switch (``common.settings.check_framework``).
"""

from __future__ import annotations

import threading
from functools import cache

from .settings import Settings

__all__ = ["EXEMPT_PATHS", "InFlight", "LockedInFlight", "worker_gate"]

# Never shed: a health check answered 503 "overloaded" would take a busy but healthy worker
# out of its load balancer, moving its load to the others; SPEC §3.16 reports backends only.
EXEMPT_PATHS = frozenset({"/health"})


class InFlight:
    """Requests in flight in one worker, at most ``limit``. ``admit`` counts a request in and
    says whether it may run; every admitted request must be ``release``d once, after its
    response (or stream) has been handed to the server."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"an in-flight limit is at least 1, got {limit}")
        self.limit = limit
        self.count = 0

    def admit(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def release(self) -> None:
        if self.count <= 0:
            raise RuntimeError("released more requests than were admitted")
        self.count -= 1


class LockedInFlight(InFlight):
    """:class:`InFlight` for a count that threads share (a WSGI worker's background tasks):
    the check and the increment under one lock, still never waiting for room."""

    __slots__ = ("_lock",)

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._lock = threading.Lock()

    def admit(self) -> bool:
        with self._lock:
            return super().admit()

    def release(self) -> None:
        with self._lock:
            super().release()


@cache
def _gate(limit: int) -> InFlight:
    return InFlight(limit)


def worker_gate(settings: Settings) -> InFlight | None:
    """The process's one gate (None when ``LAB_MAX_INFLIGHT=off``): every route of a worker
    counts against the same bound, however many places ask for it."""
    return None if settings.max_inflight is None else _gate(settings.max_inflight)

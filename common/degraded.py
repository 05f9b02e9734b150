"""Say in the log when a request was served degraded (SPEC §3.6, §3.7): cache BYPASS,
limiter fail-open or fail-closed, task store 503.

Those answers are correct by the contract, so nothing else reports them; without a line in
the log a spurious degradation (Redis up, a connection left broken) cannot be told from an
outage. During a real outage every request degrades, so each kind of degradation logs at most
one line per interval, with the count it held back: the log stays readable and costs
nothing measurable under load.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

__all__ = ["DegradedLog"]


class DegradedLog:
    """``log.warning`` at most once per ``interval_s`` per ``what``. Not locked: threads of a
    WSGI worker may race to an extra line or a count off by one, never to a lost request."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, what: str, exc: BaseException) -> None:
        now = self.clock()
        if now - self._last.get(what, -math.inf) < self.interval_s:
            self._held[what] = self._held.get(what, 0) + 1
            return
        self._last[what] = now
        held = self._held.pop(what, 0)
        more = f" ({held} more since the last line)" if held else ""
        self.logger.warning("Redis unavailable, %s: %r%s", what, exc, more)

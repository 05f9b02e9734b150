"""common/degraded.py: one log line per kind of degradation per interval, with the count
held back in between."""

from __future__ import annotations

import logging

import pytest

from common.degraded import DegradedLog


def test_one_line_a_second_per_kind_with_the_count_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = DegradedLog(logging.getLogger("lab.test"), interval_s=1.0, clock=lambda: now[0])
    error = ConnectionError("refused")
    with caplog.at_level(logging.WARNING, logger="lab.test"):
        log("cache bypassed", error)
        log("cache bypassed", error)  # held: same kind within the second
        log("rate limiter failing open", error)  # another kind has its own clock
        now[0] += 0.5
        log("cache bypassed", error)  # held
        now[0] += 0.6
        log("cache bypassed", error)  # a second after the first line: logged, with the count
        log("cache bypassed", error)  # held again
    assert [r.getMessage() for r in caplog.records] == [
        "Redis unavailable, cache bypassed: ConnectionError('refused')",
        "Redis unavailable, rate limiter failing open: ConnectionError('refused')",
        "Redis unavailable, cache bypassed: ConnectionError('refused') "
        "(2 more since the last line)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)

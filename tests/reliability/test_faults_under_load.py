"""Faults under load (issue 7; SPEC §2.1, §3.6, §3.7, §3.12, §3.13): while a pair answers a
steady mix of requests, PostgreSQL stops and restarts, Redis stops and restarts, and the
upstream service freezes (every call past ``LAB_UPSTREAM_TIMEOUT_MS``), then is stopped, then
comes back.

Asserted per pair: every answer is one the SPEC allows while that backend is away (503 for
PostgreSQL, ``X-Cache: BYPASS`` and a fail-open limiter for Redis, 504 then 502 for the
upstream), never a 500, a broken connection or a wait past the configured timeouts plus a
margin; normal answers within 5 s of each backend's return; and every accepted
``POST /items`` is in the database exactly once (rows carrying the run's marker equal the 201
answers, ids equal their ``Location``). The figures go to ``figures_dir()/faults/<pair>.json``.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import matrix
from tests.support.processes import ManagedProcess, free_port, upstream_argv
from tests.support.servers import HOST, Server, ServerConfig, base_env, contract_db_pool
from tests.support.services import PrivateServices
from tests.support.traffic import Answer, Traffic, count_by_route, latency_summary, write_figures

pytestmark = [pytest.mark.reliability, pytest.mark.services]

UPSTREAM_TIMEOUT_MS = 500
DB_TIMEOUT_MS = 2000
CONFIG = ServerConfig(
    "reliability",
    {
        "LAB_UPSTREAM_TIMEOUT_MS": str(UPSTREAM_TIMEOUT_MS),
        "LAB_DB_TIMEOUT_MS": str(DB_TIMEOUT_MS),
        # High enough that the load never meets the limit: /limited shows only the limiter's
        # Redis state (counted or fail-open), not 429s.
        "LAB_RATE_LIMIT": "1000000/60s",
        **contract_db_pool(),
    },
)
BASELINE_S = 2.0
HOLD_S = 2.0  # how long each backend stays away
RECOVERY_S = 5.0  # the bound: normal answers within 5 s of the backend's return
TAIL_S = 1.0
# A machine shared with other work stalls now and then; a hang is a wait past the configured
# timeouts by more than this.
MARGIN_S = 3.0


class Upstream:
    """``lab upstream`` on a fixed port, which the test freezes, stops and starts again."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port(HOST)
        self.url = f"http://{HOST}:{self.port}"
        self.log_dir = log_dir
        self.proc: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = ManagedProcess(
            f"upstream-{self.port}-{self.starts}",
            upstream_argv(host=HOST, port=self.port),
            base_env(),
            matrix.REPO_ROOT,
            self.log_dir,
            f"{self.url}/health",
        ).start()

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.proc is not None
        os.killpg(self.proc.proc.pid, sig)

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers (a slow upstream)."""
        self._signal(signal.SIGSTOP)

    def stop(self) -> None:
        """Thaw, then stop: the port is closed (an unreachable upstream)."""
        self._signal(signal.SIGCONT)
        assert self.proc is not None
        self.proc.stop()
        self.proc = None


@pytest.fixture
def upstream_ctl(log_dir: Path) -> Iterator[Upstream]:
    up = Upstream(log_dir)
    up.start()
    try:
        yield up
    finally:
        if up.proc is not None:
            up._signal(signal.SIGCONT)
            up.proc.stop(check=False)


@dataclass
class Fault:
    """One backend outage on the timeline: down at ``began``, back at ``back``."""

    name: str
    began: float
    back: float = 0.0
    phases: tuple[tuple[str, float], ...] = ()
    recovery_s: float | None = None


# What an answer is, per route, when everything is up; and which outage may explain each
# other answer (SPEC §2.1's 503, §3.6's BYPASS, §3.7's fail-open, §3.12's 502/504).
def normal(a: Answer) -> bool:
    if a.error is not None:
        return False
    return {
        "items": a.status == 200,
        "cached": a.status == 200 and a.x_cache in {"HIT", "MISS"},
        "limited": a.status == 200 and a.limiter_headers,
        "aggregate": a.status == 200 and a.aggregate_errors == 0,
        "post": a.status == 201,
    }[a.route]


def explained_by(a: Answer) -> str | None:
    """The outage that allows this (not normal) answer, or None: a failure in any state."""
    if a.error is not None or a.status == 0:
        return None
    if a.route in {"items", "post", "cached"} and a.status == 503:
        return "postgres"
    if a.route == "cached" and a.status == 200 and a.x_cache == "BYPASS":
        return "redis"
    if a.route == "limited" and a.status == 200 and not a.limiter_headers:
        return "redis"
    if a.route == "aggregate" and (a.status in {502, 504} or a.status == 200):
        return "upstream"
    return None


def hang_bound_s(a: Answer) -> float:
    """The configured timeout that bounds this request, plus the margin."""
    timeout_s = UPSTREAM_TIMEOUT_MS / 1000 if a.route == "aggregate" else DB_TIMEOUT_MS / 1000
    return timeout_s + MARGIN_S


def _wait_recovered(traffic: Traffic, since: float, routes: set[str]) -> float | None:
    """Seconds from ``since`` until every route in ``routes`` has had a normal answer to a
    request sent after it; None if not within RECOVERY_S (polled, bounded)."""
    deadline = since + RECOVERY_S + MARGIN_S
    while time.monotonic() < deadline:
        firsts: dict[str, float] = {}
        for a in traffic.since(since):
            if a.route in routes and normal(a):
                firsts.setdefault(a.route, a.ended)
        if set(firsts) == routes:
            return max(firsts.values()) - since
        time.sleep(0.05)
    return None


def _outage(
    traffic: Traffic,
    name: str,
    steps: list[tuple[str, Callable[[], None]]],
    restore: Callable[[], None],
    routes: set[str],
) -> Fault:
    fault = Fault(name, time.monotonic())
    phases = []
    for phase, act in steps:
        phases.append((phase, round(time.monotonic() - fault.began, 3)))
        act()
        time.sleep(HOLD_S)
    restore()
    fault.back = time.monotonic()
    fault.phases = tuple(phases)
    fault.recovery_s = _wait_recovered(traffic, fault.back, routes)
    time.sleep(TAIL_S)
    return fault


def _rows_with_marker(database_url: str, marker: str) -> list[tuple[int, str]]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return [
            (int(r[0]), str(r[1]))
            for r in conn.execute(
                "SELECT id, name FROM items WHERE name LIKE %s ORDER BY id", (marker + "-%",)
            ).fetchall()
        ]


def test_faults_under_load(
    pair: matrix.Pair, launch: Any, private: PrivateServices, upstream_ctl: Upstream
) -> None:
    private.start_postgres()
    private.start_redis()
    marker = f"rel-{pair.id}-{secrets.token_hex(4)}"
    server: Server
    with launch(pair, CONFIG, services_=private.urls, upstream_url=upstream_ctl.url) as server:
        traffic = Traffic(server.url, marker, max_seconds=120).start()
        started = time.monotonic()
        faults: list[Fault] = []
        try:
            time.sleep(BASELINE_S)
            faults.append(
                _outage(
                    traffic,
                    "postgres",
                    [("stopped", private.stop_postgres)],
                    private.start_postgres,
                    {"items", "post"},
                )
            )
            faults.append(
                _outage(
                    traffic,
                    "redis",
                    [("stopped", private.stop_redis)],
                    private.start_redis,
                    {"cached", "limited"},
                )
            )
            faults.append(
                _outage(
                    traffic,
                    "upstream",
                    [("slow", upstream_ctl.freeze), ("unreachable", upstream_ctl.stop)],
                    upstream_ctl.start,
                    {"aggregate"},
                )
            )
        finally:
            answers = traffic.stop()
            private.start_postgres()
            private.start_redis()
        elapsed = time.monotonic() - started

    rows = _rows_with_marker(private.postgres.url, marker)
    accepted = [a for a in answers if a.route == "post" and a.status == 201]
    by_fault = {f.name: f for f in faults}

    # Where each answer that is not normal came from, and whether its outage allows it then.
    unexplained, late, per_fault = [], [], {f.name: 0 for f in faults}
    for a in answers:
        if normal(a):
            continue
        cause = explained_by(a)
        fault = by_fault.get(cause or "")
        if fault is None or a.ended < fault.began:
            unexplained.append(a)
        elif a.started > fault.back + RECOVERY_S:
            late.append(a)
        else:
            per_fault[fault.name] += 1
    hangs = [a for a in answers if a.latency_s > hang_bound_s(a)]

    # A POST in flight when PostgreSQL stops can commit and then lose its reply with the
    # connection: the row exists, the client got a 503. Not lost and not duplicated, but
    # ambiguous to the client (a retry would store it twice; an idempotency key is the cure,
    # which the contract does not have). Counted, and allowed only in that window.
    stored_names = {n for _, n in rows}
    ambiguous = [
        a for a in answers if a.route == "post" and a.status != 201 and a.name in stored_names
    ]

    figures = {
        "marker": marker,
        "config": dict(CONFIG.env),
        "clients": traffic.clients,
        "duration_s": round(elapsed, 2),
        "requests_sent": len(answers),
        "answered": count_by_route(answers),
        "no_answer": sum(1 for a in answers if a.status == 0),
        "latency": latency_summary(answers),
        "latency_by_route": {
            r: latency_summary(a for a in answers if a.route == r)
            for r in sorted({a.route for a in answers})
        },
        "faults": [
            {
                "fault": f.name,
                "phases": [{"phase": p, "at_s": t} for p, t in f.phases],
                "down_s": round(f.back - f.began, 2),
                "recovery_s": None if f.recovery_s is None else round(f.recovery_s, 3),
                "answers_not_normal": per_fault[f.name],
            }
            for f in faults
        ],
        "posts": {
            "accepted": len(accepted),
            "rows": len(rows),
            "stored_but_answered_503": len(ambiguous),
        },
        "violations": {
            "unexplained": len(unexplained),
            "after_recovery": len(late),
            "hangs": len(hangs),
        },
    }
    write_figures("faults", pair.id, figures)

    def show(items: list[Answer]) -> str:
        return "\n".join(
            f"  {a.route} {a.key()} {a.latency_s:.2f}s {a.error or ''}"[:300] for a in items[:10]
        )

    assert not [a for a in answers if a.status == 500], "SPEC §2.1: a 500 under faults"
    assert not unexplained, f"answers no outage allows:\n{show(unexplained)}"
    assert not hangs, f"answers past the configured timeouts + {MARGIN_S} s:\n{show(hangs)}"
    for f in faults:
        assert f.recovery_s is not None and f.recovery_s <= RECOVERY_S, (
            f"{f.name}: no normal answers within {RECOVERY_S} s of its return"
        )
    assert not late, f"not normal more than {RECOVERY_S} s after the return:\n{show(late)}"
    # Each outage was seen by the traffic (the test tests something). Which answers show it
    # varies with timing (a one-worker sync server answers few requests in a 2 s outage), so
    # any answer the outage explains will do.
    for f in faults:
        assert per_fault[f.name] > 0, f"{f.name}: the traffic never saw the outage"
    # No accepted POST lost or duplicated.
    names = [n for _, n in rows]
    assert len(names) == len(set(names)), "a POST stored twice"
    assert {a.name for a in accepted} <= set(names), "a 201 whose row is not stored"
    pg = by_fault["postgres"]
    for a in ambiguous:
        assert a.status == 503 and a.ended >= pg.began and a.started <= pg.back, (
            f"stored without a 201, outside PostgreSQL's stop: {a.key()} {a.name}"
        )
    assert set(names) == {a.name for a in accepted} | {a.name for a in ambiguous}, (
        "a stored row no POST of this run explains"
    )
    accepted_names = {a.name for a in accepted}
    locations = {a.location for a in accepted}
    assert locations == {f"/items/{i}" for i, n in rows if n in accepted_names}, (
        "Location headers and row ids differ"
    )

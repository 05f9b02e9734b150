"""Bounded background traffic for the reliability tests: a few asyncio httpx clients sending
a fixed mix of requests, every answer recorded with its start and end time, and the figures
written as JSON.

The mix (``/items/{id}``, ``/cached/items/{id}``, ``/limited``, ``/aggregate``, and
``POST /items`` named with a per-run marker) covers each backend: PostgreSQL, Redis (cache and
limiter) and the upstream service. The loop is bounded in time and in requests; the
generator runs in a thread of its own so the test can stop and start backends meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from lab import matrix

from . import rules
from .client import TLS

__all__ = ["Answer", "Traffic", "figures_dir", "write_figures"]

ROUTES = ("items", "cached", "limited", "aggregate", "post")


@dataclass(frozen=True)
class Answer:
    """One request: what was sent, when, and what came back (``status`` 0: no answer)."""

    route: str
    started: float  # time.monotonic()
    ended: float
    status: int
    x_cache: str | None = None
    limiter_headers: bool = False
    location: str | None = None
    name: str | None = None  # POST /items: the name sent
    error: str | None = None  # transport error or rule violation
    aggregate_errors: int = 0

    @property
    def latency_s(self) -> float:
        return self.ended - self.started

    def key(self) -> str:
        """How the figures count it: the status, with X-Cache or the limiter's state."""
        if self.status == 0:
            return "no-answer"
        if self.route == "cached" and self.x_cache:
            return f"{self.status} {self.x_cache}"
        if self.route == "limited" and self.status == 200:
            return "200 counted" if self.limiter_headers else "200 fail-open"
        return str(self.status)


@dataclass
class Traffic:
    """``clients`` concurrent loops against ``base_url`` until :meth:`stop` (or
    ``max_seconds`` / ``max_requests``, whichever comes first)."""

    base_url: str
    marker: str
    clients: int = 4
    timeout_s: float = 15.0
    max_seconds: float = 120.0
    max_requests: int = 50_000
    aggregate_delay_ms: int = 5
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _seq: int = 0

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(self.timeout_s + 10)
        assert not self._thread.is_alive(), "the traffic generator did not stop"
        return list(self.answers)

    def since(self, t: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.started >= t]

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout_s, limits=limits, verify=TLS
        ) as client:
            deadline = time.monotonic() + self.max_seconds
            await asyncio.gather(
                *(self._loop(client, random.Random(i), deadline) for i in range(self.clients))
            )

    async def _loop(self, client: httpx.AsyncClient, rng: random.Random, deadline: float) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            if len(self.answers) >= self.max_requests:
                return
            await self._one(client, rng.choice(ROUTES), rng)

    async def _one(self, client: httpx.AsyncClient, route: str, rng: random.Random) -> None:
        name = None
        if route == "items":
            req = client.build_request("GET", f"/items/{rng.randint(1, 100_000)}")
        elif route == "cached":
            # A small id range, so that HITs happen and a Redis outage shows as BYPASS.
            req = client.build_request("GET", f"/cached/items/{rng.randint(1, 200)}")
        elif route == "limited":
            req = client.build_request("GET", "/limited")
        elif route == "aggregate":
            req = client.build_request("GET", f"/aggregate?n=3&delay_ms={self.aggregate_delay_ms}")
        else:
            self._seq += 1
            name = f"{self.marker}-{self._seq}"
            req = client.build_request(
                "POST", "/items", json={"name": name, "category": "toys", "price": 1.5}
            )
        started = time.monotonic()
        try:
            resp = await client.send(req)
        except httpx.HTTPError as exc:
            self.answers.append(
                Answer(route, started, time.monotonic(), 0, name=name, error=repr(exc))
            )
            return
        ended = time.monotonic()
        violations = rules.common_violations(resp.status_code, resp.headers)
        if resp.status_code >= 400:
            violations += rules.problem_violations(resp.status_code, resp.headers, resp.content)
        agg_errors = 0
        if route == "aggregate" and resp.status_code == 200:
            agg_errors = len(resp.json().get("errors", []))
        self.answers.append(
            Answer(
                route,
                started,
                ended,
                resp.status_code,
                x_cache=resp.headers.get("x-cache"),
                limiter_headers="ratelimit-remaining" in resp.headers,
                location=resp.headers.get("location"),
                name=name,
                error="; ".join(violations) or None,
                aggregate_errors=agg_errors,
            )
        )


def count_by_route(answers: Iterable[Answer]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for a in answers:
        counts.setdefault(a.route, Counter())[a.key()] += 1
    return {route: dict(sorted(c.items())) for route, c in sorted(counts.items())}


def latency_summary(answers: Iterable[Answer]) -> dict[str, float | int | None]:
    """Count, p50, p99 and max in milliseconds (nearest-rank percentiles)."""
    values = sorted(a.latency_s * 1000 for a in answers)
    if not values:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

    def rank(q: float) -> float:
        return round(values[min(len(values) - 1, max(0, int(q * len(values) + 0.5) - 1))], 1)

    return {
        "count": len(values),
        "p50_ms": rank(0.50),
        "p99_ms": rank(0.99),
        "max_ms": round(values[-1], 1),
    }


def figures_dir() -> Path:
    """Where the figures go: ``LAB_RELIABILITY_DIR``, else ``.lab/reliability/``."""
    raw = os.environ.get("LAB_RELIABILITY_DIR")
    return Path(raw) if raw else matrix.REPO_ROOT / ".lab" / "reliability"


def write_figures(kind: str, pair_id: str, data: dict[str, Any]) -> Path:
    """``<dir>/<kind>/<pair>.json``, written whole (temp file, then rename)."""
    path = figures_dir() / kind / f"{pair_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    head = {
        "kind": kind,
        "pair": pair_id,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    tmp.write_text(json.dumps(head | data, indent=2) + "\n")
    tmp.replace(path)
    return path

"""A bystander during a cell: one client requesting one path, one request at a time, while
wrk loads the server. Its latency shows what the load does to everyone else: a handler that
blocks the event loop (CPU work inline, a synchronous HTTP call) delays ``/health`` too,
which requests/s alone never shows.

The probe runs in a thread of the harness (pinned with it to the client CPUs) over one
keep-alive connection, so it measures the server's queueing, not connection set-up. It stops
when the cell's load ends, and after ``max_requests`` at most.
"""

from __future__ import annotations

import http.client
import time
from typing import Any
from urllib.parse import urlsplit

from .background import Background
from .stats import percentile

__all__ = ["Probe"]


class Probe(Background):
    def __init__(
        self, base_url: str, path: str, *, timeout_s: float, max_requests: int = 100_000
    ) -> None:
        super().__init__("lab-probe", join_timeout_s=timeout_s + 1)
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = path
        self.timeout_s = timeout_s
        self.max_requests = max_requests
        self.latencies_ms: list[float] = []
        self.errors = 0
        self.statuses: dict[int, int] = {}

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while (
            not self.stopping.is_set() and len(self.latencies_ms) + self.errors < self.max_requests
        ):
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            started = time.perf_counter()
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = None
                self.stopping.wait(0.01)  # a refused connection would otherwise spin
                continue
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
        if conn is not None:
            conn.close()

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "path": self.path,
            "requests": len(lat),
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "latency_ms": None
            if not lat
            else {
                "p50": round(percentile(lat, 50), 3),
                "p99": round(percentile(lat, 99), 3),
                "max": round(lat[-1], 3),
            },
        }

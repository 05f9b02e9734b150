"""The in-load checks of bench/lua/lab.lua, run by real wrk against a tiny local server that
answers every other request without the headers the checks look for (a cache BYPASS, a
limiter that failed open). Each run is one second at two connections, on 127.0.0.1.

Needs wrk on PATH: without it the test fails with the install command.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from bench import load, preflight
from lab.scenarios import LoadCheck, scenario
from tests.support.httpserver import serving

BODY = b'{"ok":true}'


class _Alternating(BaseHTTPRequestHandler):
    """Even requests: ``X-Cache: HIT`` and ``RateLimit-Remaining``; odd: ``X-Cache: BYPASS``."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the lab's servers
    counter = itertools.count()
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            n = next(self.counter)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        if n % 2 == 0:
            self.send_header("X-Cache", "HIT")
            self.send_header("RateLimit-Remaining", "7")
        else:
            self.send_header("X-Cache", "BYPASS")
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving(_Alternating) as address:
        yield address


@pytest.mark.parametrize(
    "check",
    [
        LoadCheck(header=("x-cache", "HIT"), count_header="x-cache"),
        LoadCheck(header_present="ratelimit-remaining", count_header="x-cache"),
    ],
    ids=["header", "header_present"],
)
def test_a_response_without_the_header_is_a_mismatch(
    url: str, check: LoadCheck, tmp_path: Path
) -> None:
    wrk = load.find_wrk()
    assert wrk is not None, f"wrk not found: {preflight.WRK_INSTALL}"
    sc = replace(scenario("json"), load=check)
    run = load.run_load(
        wrk,
        url,
        sc,
        connections=2,
        duration_s=1,
        timeout_s=5,
        threads=1,
        out=tmp_path / "wrk.json",
        text_out=tmp_path / "wrk.txt",
        seed=1,
        cpus=None,
    )
    counts = run.result.header_counts
    assert counts.get("HIT", 0) > 10 and counts.get("BYPASS", 0) > 10, counts
    assert run.result.mismatches == counts["BYPASS"]  # exactly the answers without it
    assert sum(counts.values()) == run.result.responses


def test_the_matrix_asks_every_cache_hit_and_limiter_answer_to_show_it() -> None:
    assert scenario("cached-items-hit").load.header == ("x-cache", "HIT")
    assert scenario("limited").load.header_present == "ratelimit-remaining"
    env = load.wrk_env(scenario("limited"), Path("out.json"), seed=1)
    assert env["LAB_WRK_HEADER_PRESENT"] == "ratelimit-remaining"

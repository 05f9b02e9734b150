"""Hostile clients (issue 7): while slow clients hold connections (slowloris: headers trickled
a line a second), oversize headers and bodies arrive and hundreds of keep-alive connections sit
idle, a well-behaved client keeps asking for ``/json`` and ``/health``.

Asserted per pair: the well-behaved client gets correct answers, each within
``GOOD_TIMEOUT_S`` (a behaviour bound, not a speed goal); oversize bodies get SPEC §2.1's 413
and oversize headers a prompt answer below 500 (most servers refuse them, uvicorn's httptools
parser takes them) or a closed connection, never a 5xx or no answer; the server is still
up and stops cleanly. A pair that cannot hold against slowloris by design is a Deviation
(SPEC.md D3): for it, the suite asserts the deviated behaviour (the well-behaved client is
starved while the slow clients hold the worker, and served again once they leave).
Figures, with and without the hostile load, go to ``figures_dir()/hostile/<pair>.json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lab import matrix
from tests.support.hostile import Good, Hostile, idle_connection_budget
from tests.support.servers import Server, ServerConfig, contract_db_pool
from tests.support.services import PrivateServices
from tests.support.traffic import write_figures

pytestmark = [pytest.mark.reliability]

GOOD_TIMEOUT_S = 5.0
PHASE_S = 4.0
RECOVER_S = 15.0
CONFIG = ServerConfig("hostile", contract_db_pool())
# SPEC.md D3: servers whose request handling blocks a worker (or a worker's thread) for as
# long as a client takes to send its headers. 50 slow clients exceed gunicorn's sync worker
# (1 connection at a time) and its gthread worker (8 threads).
SLOWLORIS_STARVES = frozenset({"flask-gunicorn", "flask-gunicorn-gthread"})
TIMEOUTS = frozenset({"ReadTimeout", "ConnectTimeout", "PoolTimeout", "WriteTimeout"})
EXPECTED = {
    "/json": {"message": "Hello, World!"}.__eq__,
    "/health": {"status": "ok", "db": "ok", "cache": "ok"}.__eq__,
}


@pytest.fixture
def hostile_server(pair: matrix.Pair, launch: Any, private: PrivateServices) -> Iterator[Server]:
    private.start_postgres()
    private.start_redis()
    with launch(pair, CONFIG, services_=private.urls) as srv:
        yield srv


def test_well_behaved_client_is_served_under_hostile_clients(
    pair: matrix.Pair, hostile_server: Server
) -> None:
    port = int(hostile_server.url.rsplit(":", 1)[1])
    good = Good(hostile_server.url, GOOD_TIMEOUT_S, EXPECTED)
    try:
        quiet = good.phase(PHASE_S)
        flood = Hostile(
            "127.0.0.1", port, "flood", idle_connections=idle_connection_budget()
        ).start()
        under_flood = good.phase(PHASE_S)
        flood_stats = flood.stop()
        slow = Hostile("127.0.0.1", port, "slowloris").start()
        under_slowloris = good.phase(PHASE_S)
        slow_stats = slow.stop()
        # A fresh connection afterwards: the old one may have been given up on meanwhile.
        good.close()
        good = Good(hostile_server.url, GOOD_TIMEOUT_S, EXPECTED)
        recovered_s = good.until_ok(RECOVER_S)
        after = good.phase(2.0)
    finally:
        good.close()
    alive = hostile_server.process.running()
    deviates = pair.id in SLOWLORIS_STARVES
    write_figures(
        "hostile",
        pair.id,
        {
            "good_client": {
                "timeout_s": GOOD_TIMEOUT_S,
                "quiet": quiet,
                "flood": under_flood,
                "slowloris": under_slowloris,
                "after": after,
            },
            "flood": flood_stats,
            "slowloris": slow_stats,
            "recovered_s": None if recovered_s is None else round(recovered_s, 3),
            "deviation": "D3" if deviates else None,
            "server_alive": alive,
        },
    )

    assert alive, "the server died under hostile clients"
    for name, figures in (("quiet", quiet), ("flood", under_flood), ("after", after)):
        assert figures["failed"] == 0 and figures["ok"] > 0, (name, figures)
        assert figures["max_s"] <= GOOD_TIMEOUT_S, (name, figures)
    headers, bodies = flood_stats["oversize_headers"], flood_stats["oversize_body"]
    assert headers and bodies, flood_stats
    # No header limit is in the SPEC: servers refuse 100 KB of headers (431, 400) or, like
    # uvicorn with httptools, accept them; either way promptly and never with a 5xx.
    assert all(k == "closed" or k[0] in "234" for k in headers), (
        f"oversize headers must get an answer below 500 or a closed connection: {headers}"
    )
    assert set(bodies) <= {"413", "closed"} and bodies.get("413"), (
        f"SPEC §2.1: a body announced past 64 KiB is a 413: {bodies}"
    )
    assert flood_stats["idle_answered"] == flood_stats["idle_opened"] > 0, flood_stats
    assert recovered_s is not None, "not served again after the slow clients left"
    if deviates:
        # SPEC.md D3: the slow clients hold every request slot, so the well-behaved client
        # waits past its timeout while they stay (a request already in a worker's hands may
        # still be answered first).
        assert under_slowloris["failed"] > 0, under_slowloris
        assert set(under_slowloris["failures"]) <= TIMEOUTS, under_slowloris
    else:
        assert under_slowloris["failed"] == 0 and under_slowloris["ok"] > 0, under_slowloris
        assert under_slowloris["max_s"] <= GOOD_TIMEOUT_S, under_slowloris

"""Readers that stop reading (SPEC §2.4, §3.8): clients ask for every streaming route (the
item stream as NDJSON, a JSON array and CSV; server-sent events; the report), read the
response head and a few KiB, then read nothing more and keep their connections open.

More item streams stall than the pool has connections, so a stream that held its database
connection while it waited on its client would leave none for anyone else. Asserted per pair,
with the write timeout shortened to ``WRITE_TIMEOUT_MS``: a well-behaved client's ``/db`` and
``/json`` keep their correct answers, each within the pool timeout (``LAB_DB_TIMEOUT_MS``),
while the readers stall; stalled streams are given up once a write has waited past the
timeout (the client sees them truncated); and the pair answers at once after the readers go.
A pair that cannot keep answering by design is a Deviation (SPEC.md D6): for it, the suite
asserts the deviated behaviour (the well-behaved client waits while the stalled readers hold
the worker's threads, and is served again as soon as they go). Figures go to
``figures_dir()/stalled/<pair>.json``.
"""

from __future__ import annotations

from typing import Any

import pytest

from lab import matrix
from tests.support.hostile import Good, Hostile
from tests.support.servers import ServerConfig, contract_db_pool
from tests.support.services import PrivateServices
from tests.support.traffic import write_figures

pytestmark = [pytest.mark.reliability]

WRITE_TIMEOUT_MS = 1000
DB_TIMEOUT_MS = 3000  # the contract's default: the bound on waiting for a pooled connection
STALL_S = 3.0  # how long the readers stall while the well-behaved client asks: past the timeout
RECOVER_S = 15.0
POOL_SIZE = int(contract_db_pool()["LAB_DB_POOL_SIZE"])
CONFIG = ServerConfig(
    "stalled",
    {
        **contract_db_pool(),
        "LAB_WRITE_TIMEOUT_MS": str(WRITE_TIMEOUT_MS),
        "LAB_DB_TIMEOUT_MS": str(DB_TIMEOUT_MS),
    },
)
# About 23 MB each, so every one fills the socket buffers and stalls the server's writes.
ITEM_STREAMS = tuple(
    ("/stream/items?count=100000", accept)
    for accept in ("application/x-ndjson", "application/json", "text/csv")
)
# Small enough for the socket buffers: the server finishes them whether read or not.
WHOLE = (
    ("/stream/events?count=1000&interval_ms=0", "text/event-stream"),
    ("/report?rows=5000", "application/json"),
)
# More stalled item streams than the pool has connections, in turn over the three formats.
TARGETS = tuple(ITEM_STREAMS[i % 3] for i in range(POOL_SIZE + 2)) + WHOLE * 2
CHECKS = {
    "/db": lambda body: set(body) == {"id", "randomNumber"},
    "/json": {"message": "Hello, World!"}.__eq__,
}
# SPEC.md D6: a WSGI server writes a response from one of its few request threads (or its
# only one), so each stalled reader holds one: gunicorn's until the write timeout frees it,
# granian's until the reader goes (its WSGI interface hands the app no socket and has no write
# timeout of its own). Behind them the well-behaved client waits.
THREADS_FREED_BY_THE_TIMEOUT = frozenset({"flask-gunicorn", "flask-gunicorn-gthread"})
THREADS_HELD_UNTIL_THEY_GO = frozenset({"flask-granian"})
TIMEOUTS = frozenset({"ReadTimeout", "ConnectTimeout", "PoolTimeout", "WriteTimeout"})


def test_stalled_readers_hold_nothing_other_requests_need(
    pair: matrix.Pair, launch: Any, private: PrivateServices
) -> None:
    private.start_postgres()
    private.start_redis()
    with launch(pair, CONFIG, services_=private.urls) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        good = Good(srv.url, DB_TIMEOUT_MS / 1000, CHECKS)
        try:
            before = good.phase(1.0)
            readers = Hostile("127.0.0.1", port, "stalled", stalled_targets=TARGETS).start()
            settled = readers.wait_stalled(30)
            stalled = good.phase(STALL_S)
            stats = readers.stop()
            good.close()  # a fresh connection: the old one may have been given up meanwhile
            good = Good(srv.url, DB_TIMEOUT_MS / 1000, CHECKS)
            recovered_s = good.until_ok(RECOVER_S)
            after = good.phase(1.0)
        finally:
            good.close()
        alive = srv.process.running()
    deviates = pair.id in THREADS_FREED_BY_THE_TIMEOUT | THREADS_HELD_UNTIL_THEY_GO
    write_figures(
        "stalled",
        pair.id,
        {
            "good_client": {
                "timeout_s": DB_TIMEOUT_MS / 1000,
                "before": before,
                "stalled": stalled,
                "after": after,
            },
            "write_timeout_ms": WRITE_TIMEOUT_MS,
            "readers": stats,
            "recovered_s": None if recovered_s is None else round(recovered_s, 3),
            "deviation": "D6" if deviates else None,
            "server_alive": alive,
        },
    )

    assert alive, "the server died under stalled readers"
    assert settled, stats
    for name, figures in (("before", before), ("after", after)):
        assert figures["failed"] == 0 and figures["ok"] > 0, (name, figures)
    assert recovered_s is not None, "not served again after the stalled readers left"
    # A stalled item stream ends truncated once a write waited past the timeout, or is still
    # coming when the readers are let go (a server that buffers more before its writes wait);
    # the figures keep which. That the timeout fired is what is asserted.
    item_ends = [stats["ends"][f"{target} {accept}"] for target, accept in ITEM_STREAMS]
    truncated = sum(ends.get("truncated", 0) for ends in item_ends)
    if pair.id in THREADS_HELD_UNTIL_THEY_GO:
        assert set(stalled["failures"]) <= TIMEOUTS, stalled
        assert truncated == 0, stats  # no write timeout: it holds them until they go
        return
    assert truncated > 0, f"no stalled stream was given up after its write timeout: {stats}"
    if pair.id in THREADS_FREED_BY_THE_TIMEOUT:
        assert set(stalled["failures"]) <= TIMEOUTS, stalled
        return
    assert stats["heads"] == {"200": len(TARGETS)}, stats
    assert stalled["failed"] == 0 and stalled["ok"] > 0, stalled
    assert stalled["max_s"] <= DB_TIMEOUT_MS / 1000, stalled

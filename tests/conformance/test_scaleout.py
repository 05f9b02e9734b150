"""Scale-out without Docker (issue 7, docs/scale-out.md): ``lab serve --instances 2`` runs
two instances of the pair behind nginx (lab/scaleout.py).

Black-box through the proxy: requests are spread over both instances (nginx names the one
that answered in ``X-Lab-Upstream``), the cache and the limiter are shared through Redis,
the limiter keys on the real client behind the trusted proxy, and ``lab serve`` stops the
proxy and both instances cleanly (``ManagedProcess.stop`` fails on any leftover process).
"""

from __future__ import annotations

import secrets
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab import matrix, scaleout
from tests.support.addresses import fresh_forwarded, fresh_loopback
from tests.support.client import LabClient
from tests.support.expect import assert_problem, json_body
from tests.support.processes import ManagedProcess, free_port, serve_argv
from tests.support.servers import HOST, base_env
from tests.support.services import Services

# nginx in front of two instances: the topology and the shared Redis state are the same for
# every server (each server's own stop is the in-flight stream test's), so one pair per
# framework.
pytestmark = [pytest.mark.conformance, pytest.mark.per_framework]

LIMIT = 5
INSTANCES = 2


def _refuses(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def proxied(
    pair: matrix.Pair, services: Services, upstream: str, log_dir: Path
) -> Iterator[tuple[str, ManagedProcess]]:
    """``lab serve --instances 2`` for the pair; yields nginx's URL and the process."""
    # Not a skip: CI installs nginx-light (.ci/run); a machine without it fails here, saying so.
    scaleout.find_nginx()
    port = free_port(HOST)
    argv = [
        *serve_argv(pair.framework.name, pair.server.name, host=HOST, port=port, workers=1),
        "--instances",
        str(INSTANCES),
    ]
    env = base_env() | {
        "LAB_DATABASE_URL": services.database_url,
        "LAB_REDIS_URL": services.redis_url,
        "LAB_UPSTREAM_URL": upstream,
        "LAB_RATE_LIMIT": f"{LIMIT}/60s",
    }
    url = f"http://{HOST}:{port}"
    proc = ManagedProcess(
        f"{pair.id}-nginx-x{INSTANCES}-{port}",
        argv,
        env,
        matrix.REPO_ROOT,
        log_dir,
        f"{url}/health",
    ).start()
    try:
        yield url, proc
    finally:
        proc.stop(check=False)


@pytest.fixture
def live(proxied) -> str:
    url, proc = proxied
    if not proc.running():
        pytest.fail("the scale-out topology was stopped by an earlier test (order matters)")
    return url


def test_requests_spread_over_both_instances(live: str, proxied) -> None:
    """Round robin over two instances: a run of requests is answered by exactly two
    distinct upstreams, each about half; every response keeps the contract's common rules
    through the proxy (one Server, one Date, Server-Timing, no 5xx)."""
    seen: Counter[str] = Counter()
    with LabClient(live) as c:
        for _ in range(20):
            resp = c.get("/json")
            assert json_body(resp) == {"message": "Hello, World!"}
            seen[resp.headers["x-lab-upstream"]] += 1
    assert len(seen) == INSTANCES, f"{dict(seen)}\n{proxied[1].log_tail()}"
    assert all(n >= 5 for n in seen.values()), f"uneven spread: {dict(seen)}"
    assert all(addr.startswith(f"{HOST}:") for addr in seen)


def test_cache_is_shared_between_instances(live: str, redis_client: Any) -> None:
    """SPEC §3.6 across instances: the entry one instance stores (MISS) is the one the other
    serves (HIT), with the same ETag and bytes."""
    item = 1 + secrets.randbelow(100_000)
    redis_client.delete(f"lab:item:{item}")
    with LabClient(live) as c:
        miss = c.get(f"/cached/items/{item}")
        hit = c.get(f"/cached/items/{item}")
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert miss.headers["x-lab-upstream"] != hit.headers["x-lab-upstream"]
    assert hit.headers["etag"] == miss.headers["etag"]
    assert hit.content == miss.content


def test_limiter_is_shared_and_keys_on_the_real_client(live: str) -> None:
    """SPEC §3.7 behind the proxy: one client's requests, spread over both instances, count
    against one bucket (exactly ``limit`` admitted); another client behind the same proxy has
    its own bucket (the instances key on X-Forwarded-For from the trusted proxy, not on
    nginx's address); an X-Forwarded-For the client forges does not give it a new bucket."""
    with (
        LabClient(live, local_address=fresh_loopback()) as a,
        LabClient(live, local_address=fresh_loopback()) as b,
    ):
        answers = [a.get("/limited") for _ in range(LIMIT + 2)]
        assert [r.status_code for r in answers] == [200] * LIMIT + [429, 429]
        assert [int(r.headers["ratelimit-remaining"]) for r in answers[:LIMIT]] == list(
            range(LIMIT - 1, -1, -1)
        )
        assert len({r.headers["x-lab-upstream"] for r in answers}) == INSTANCES
        assert_problem(answers[-1], 429, "rate-limited")
        forged = a.get("/limited", headers={"X-Forwarded-For": fresh_forwarded()})
        assert_problem(forged, 429, "rate-limited")
        other = b.get("/limited")
        assert other.status_code == 200
        assert other.headers["ratelimit-remaining"] == str(LIMIT - 1)


def _tcp(ports: set[int]) -> list[Any]:
    return [
        k
        for k in psutil.net_connections("tcp")
        if k.raddr and (k.laddr.port in ports or k.raddr.port in ports)
    ]


ACTIVE_CLOSE = {psutil.CONN_FIN_WAIT1, psutil.CONN_FIN_WAIT2, psutil.CONN_TIME_WAIT}


def test_the_proxy_closes_idle_instance_connections_first(proxied) -> None:
    """nginx drops a pooled connection to an instance after 2 s idle (keepalive_timeout in
    lab/nginx.conf.template), before the instance's own 5 s would: else a request can meet an
    instance closing that connection, and nginx takes the instance out for 10 s. The side
    that closes a TCP connection first goes through FIN-WAIT to TIME-WAIT, so this reads the
    kernel's socket table: nginx's end of each pooled connection leaves ESTABLISHED within
    4.5 s for one of those states, the instance's end for none of them."""
    url, proc = proxied
    with LabClient(url) as c:
        upstreams = {c.get("/json").headers["x-lab-upstream"] for _ in range(2 * INSTANCES)}
    ports = {int(addr.rsplit(":", 1)[1]) for addr in upstreams}
    pooled = {  # (nginx's port, the instance's port)
        (k.laddr.port, k.raddr.port)
        for k in _tcp(ports)
        if k.status == psutil.CONN_ESTABLISHED and k.raddr.port in ports
    }
    if not pooled:  # gunicorn's sync worker: no keep-alive, it closes after each response
        closed = [k for k in _tcp(ports) if k.laddr.port in ports and k.status in ACTIVE_CLOSE]
        assert closed, "nginx holds no connection to the instances, and they closed none"
        return
    deadline = time.monotonic() + 4.5  # the instances' own idle timeout is 5 s
    while True:
        ends = {(k.laddr.port, k.raddr.port): k.status for k in _tcp(ports)}
        if not any(ends.get(conn) == psutil.CONN_ESTABLISHED for conn in pooled):
            break
        assert time.monotonic() < deadline, f"pooled connections still open\n{proc.log_tail()}"
        time.sleep(0.1)  # polling the kernel's socket table for a condition, bounded above
    closed_by_proxy = {conn for conn in pooled if ends.get(conn) in ACTIVE_CLOSE}
    closed_by_instance = {conn for conn in pooled if ends.get(conn[::-1]) in ACTIVE_CLOSE}
    assert (closed_by_proxy, closed_by_instance) == (pooled, set()), ends


def test_stop_leaves_nothing_behind(proxied) -> None:
    """SPEC §5 for the topology (this module's last test): SIGTERM to ``lab serve`` stops
    nginx and both instances, all exit cleanly, no process is left and no port answers."""
    url, proc = proxied
    with LabClient(url) as c:
        instances = {c.get("/json").headers["x-lab-upstream"] for _ in range(4)}
    assert len(instances) == INSTANCES
    proc.stop(check=True)
    assert not proc.running()
    assert _refuses(url.removeprefix("http://"))
    for addr in instances:
        assert _refuses(addr), f"instance {addr} still accepts connections after the stop"

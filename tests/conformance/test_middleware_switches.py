"""SPEC §6's middleware switches, black-box: a server started with a switch behaves as
documented, and the rest of the production stack still holds under it.

One server per pair runs with ``LAB_TIMING=off`` and ``LAB_ACCESS_LOG=on`` together (the two
are independent: one drops a header, the other writes to stderr); ``LAB_MIDDLEWARE=basehttp``
gets its own start on FastAPI's pairs, and each other framework's refusal is checked once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab import matrix
from tests.conformance.conftest import Launch
from tests.support import pairs as pair_selection
from tests.support.client import TLS, LabClient
from tests.support.codecs import decode
from tests.support.processes import ProcessError
from tests.support.servers import Server, ServerConfig

SWITCHED = ServerConfig("switched", {"LAB_TIMING": "off", "LAB_ACCESS_LOG": "on"})
BASEHTTP = ServerConfig("basehttp", {"LAB_MIDDLEWARE": "basehttp"})


@pytest.fixture(scope="session")
def switched_server(pair: matrix.Pair, launch: Launch) -> Iterator[Server]:
    with launch(pair, SWITCHED) as srv:
        yield srv


def _access_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if set(doc) == {"method", "path", "status", "duration_ms"}:
                lines.append(doc)
    return lines


def _wait_for(log: Path, want: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """The access line matching ``want`` (a WSGI server writes it when it closes the body,
    so it may land a moment after the response)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [d for d in _access_lines(log) if all(d[k] == v for k, v in want.items())]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no access line {want} in {log}:\n{log.read_text()[-1500:]}")
        time.sleep(0.05)


def test_timing_off_drops_server_timing(switched_server: Server) -> None:
    with httpx.Client(base_url=switched_server.url, verify=TLS) as http:
        for path, status in (("/json", 200), ("/no-such-route", 404)):
            resp = http.get(path, headers={"Accept-Encoding": "gzip"})
            assert resp.status_code == status
            assert "server-timing" not in resp.headers, dict(resp.headers)
            assert "accept-encoding" in resp.headers.get("vary", "").lower()  # the rest holds
        report = http.get("/report", headers={"Accept-Encoding": "gzip"})
        assert report.headers["content-encoding"] == "gzip"
        assert "server-timing" not in report.headers


def test_access_log_writes_one_json_line_per_request(switched_server: Server) -> None:
    log = switched_server.process.log_path
    unique = 900_000 + int(time.time() * 1000) % 99_999
    marker = f"/items/{unique}"  # a 404, unique per run
    with httpx.Client(base_url=switched_server.url, verify=TLS) as http:
        # The server is shared with the switch group's other tests, whose lines may still be
        # on their way to the log: a line of our own, waited for, comes after all of them.
        settled = f"/items/{unique + 1}"
        assert http.get(settled).status_code == 404
        _wait_for(log, {"path": settled})
        before = len(_access_lines(log))
        assert http.get("/json").status_code == 200
        assert http.get(marker).status_code == 404
        assert http.get("/stream/items?count=3").status_code == 200
    line = _wait_for(log, {"path": marker})
    assert line["method"] == "GET" and line["status"] == 404
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    json_line = _wait_for(log, {"path": "/json", "status": 200})
    assert json_line["method"] == "GET"
    _wait_for(log, {"path": "/stream/items", "status": 200})
    # One line per request: the three requests above (and nothing else ran meanwhile but
    # /health readiness checks, which happen only at start).
    assert len(_access_lines(log)) - before == 3


def test_access_log_is_off_by_default(server: Server) -> None:
    with LabClient(server.url) as client:
        client.get("/json")
    time.sleep(0.2)  # give a (wrongly) logging server the moment a WSGI close would take
    assert _access_lines(server.process.log_path) == []


# Frameworks refuse LAB_MIDDLEWARE=basehttp at import, whatever the server: checked once each.
REFUSING = [p for p in pair_selection.select().tables if p.framework.name != "fastapi"]


@pytest.mark.parametrize("refusing", REFUSING, ids=[p.framework.name for p in REFUSING])
def test_basehttp_middleware_is_refused_by_the_others(
    refusing: matrix.Pair, launch: Launch
) -> None:
    with pytest.raises(ProcessError, match="LAB_MIDDLEWARE=basehttp"), launch(refusing, BASEHTTP):
        pass


@pytest.mark.frameworks("fastapi")
def test_basehttp_middleware(pair: matrix.Pair, launch: Launch) -> None:
    """FastAPI: the same rules through BaseHTTPMiddleware (the client's checks cover
    Server-Timing, Vary and problem shapes on every response)."""
    with launch(pair, BASEHTTP) as srv, LabClient(srv.url) as client:
        assert client.get("/json").json() == {"message": "Hello, World!"}
        client.get("/no-such-route", allow=[404])
        report = client.http.get("/report", headers={"Accept-Encoding": "br"})
        assert report.headers["content-encoding"] == "br"
        assert json.loads(report.content)["rows"] == 1000  # httpx decoded it: whole and valid
        with client.http.stream(
            "GET",
            "/stream/items?count=500",
            headers={"Accept": "application/x-ndjson", "Accept-Encoding": "zstd"},
        ) as resp:
            assert resp.headers["content-encoding"] == "zstd"
            assert "content-length" not in resp.headers
            raw = b"".join(resp.iter_raw())
        assert len(decode(raw, "zstd").splitlines()) == 500
        big = client.http.post(
            "/items", content=b"x" * (70 * 1024), headers={"Content-Type": "application/json"}
        )
        assert big.status_code == 413

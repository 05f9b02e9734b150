"""The benchmark's scenarios (``[scenarios.*]`` in ``lab/matrix.toml``) as smoke cases: each
scenario's request, answered with one of its expected statuses, passes the scenario's own
``check`` (what the harness verifies before and after a cell) and ``load`` check (what wrk's
Lua verifies on every response, on the bytes as sent). A pair failing here would fail its
benchmark cells; the SPEC sections are those of each scenario's route.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from lab import scenarios
from tests.conformance.conftest import DEFAULT
from tests.support import rules
from tests.support.client import LabClient, Raw
from tests.support.servers import Server, ServerConfig, ServersByConfig

pytestmark = pytest.mark.conformance

# Every scenario a pair is loaded with; ``floor_only`` ones are the floors' control, not the
# contract (tests/bench/test_floors.py serves them).
SCENARIOS = [s for s in scenarios.scenarios() if not s.floor_only]
ON_DEFAULT = [s for s in SCENARIOS if not s.config]
ON_OWN_CONFIG = [s for s in SCENARIOS if s.config]


@pytest.fixture(scope="module")
def scenario_servers(pair, launch, server: Server) -> Iterator[ServersByConfig]:
    servers = ServersByConfig(launch, pair, default=server)
    try:
        yield servers
    finally:
        servers.close()


def _config(sc: scenarios.Scenario) -> ServerConfig:
    return ServerConfig("scenario-" + sc.id, sc.env) if sc.config else DEFAULT


def _request(client: LabClient, sc: scenarios.Scenario) -> Raw:
    """The scenario's request as wrk sends it: its headers only (no Accept-Encoding unless the
    scenario sets one)."""
    omit = [] if any(k.lower() == "accept-encoding" for k in sc.headers) else ["accept-encoding"]
    return client.raw(
        sc.method,
        sc.sample_path(),
        headers=sc.headers,
        omit=omit,
        content=sc.body.encode() if sc.body is not None else None,
        allow=[s for s in sc.expect if s >= 500],
    )


@pytest.mark.parametrize("sc", ON_DEFAULT, ids=[s.id for s in ON_DEFAULT])
def test_scenario(scenario_servers: ServersByConfig, sc: scenarios.Scenario) -> None:
    """Each scenario's request passes its ``check`` and ``load`` (after one warm-up request,
    as the harness makes)."""
    _check_scenario(scenario_servers.get(_config(sc)), sc)


@pytest.mark.per_framework
@pytest.mark.parametrize("sc", ON_OWN_CONFIG, ids=[s.id for s in ON_OWN_CONFIG])
def test_scenario_with_its_own_settings(
    scenario_servers: ServersByConfig, sc: scenarios.Scenario
) -> None:
    """The same for the scenarios that start the server with settings of their own (a limit
    that admits all): what they change is the domain's, not the server's."""
    _check_scenario(scenario_servers.get(_config(sc)), sc)


def _check_scenario(srv: Server, sc: scenarios.Scenario) -> None:
    with srv.client() as c:
        _request(c, sc)  # warm-up (e.g. fills the cache for cached-items-hit)
        raw = _request(c, sc)
    assert raw.status_code in sc.expect, (raw.status_code, raw.body[:300])
    check, headers = sc.check, raw.headers
    failures = []
    if check.content_type and rules.media_type(headers.get("content-type")) != check.content_type:
        failures.append(f"content type {headers.get('content-type')!r} != {check.content_type}")
    for name, value in check.headers.items():
        if headers.get(name) != value:
            failures.append(f"header {name}: {headers.get(name)!r} != {value!r}")
    failures += [f"header {n} missing" for n in check.headers_present if n not in headers]
    if check.encoding and headers.get("content-encoding") != check.encoding:
        failures.append(f"Content-Encoding {headers.get('content-encoding')!r} != {check.encoding}")
    text = raw.body.decode("utf-8", errors="replace")
    if check.body_contains and check.body_contains not in text:
        failures.append(f"body lacks {check.body_contains!r}")
    if check.json_keys or check.json_length is not None or check.json_lengths:
        doc = json.loads(raw.body)
        if check.json_keys and not (isinstance(doc, dict) and set(check.json_keys) <= set(doc)):
            failures.append(
                f"JSON keys {sorted(doc) if isinstance(doc, dict) else type(doc)} "
                f"lack {check.json_keys}"
            )
        if check.json_length is not None and len(doc) != check.json_length:
            failures.append(f"JSON length {len(doc)} != {check.json_length}")
        for key, length in check.json_lengths.items():
            if len(doc.get(key, ())) != length:
                failures.append(f"len({key}) {len(doc.get(key, ()))} != {length}")
    if check.ndjson_lines is not None:
        lines = [ln for ln in text.split("\n") if ln]
        if len(lines) != check.ndjson_lines:
            failures.append(f"{len(lines)} NDJSON lines != {check.ndjson_lines}")
    load = sc.load
    wire = raw.wire.decode("utf-8", errors="replace")
    if load.body_contains and load.body_contains not in wire:
        failures.append(f"load: the body as sent lacks {load.body_contains!r}")
    if load.header and headers.get(load.header[0]) != load.header[1]:
        failures.append(
            f"load: header {load.header[0]} {headers.get(load.header[0])!r} != {load.header[1]!r}"
        )
    if load.count_header and load.count_header not in headers:
        failures.append(f"load: no {load.count_header} header to count")
    assert not failures, f"scenario {sc.id}: " + "; ".join(failures)

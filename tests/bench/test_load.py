"""The load tool's JSON (written by ``done()`` in bench/lua/lab.lua) and the Lua's inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import load
from lab.scenarios import scenario

# Recorded from a real run: wrk 4.1.0, raw_asgi on uvicorn, GET /json, 64 connections.
RECORDED = (
    '{"format":"lab-wrk/1","threads":1,"duration_us":1005606,"requests":17460,'
    '"bytes":2653920,"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},'
    '"latency_us":{"min":130,"mean":3893.554,"stdev":3099.249,"max":26007,"p50":3249,'
    '"p75":5250,"p90":7693,"p99":14889,"p99_9":25979},"statuses":{"200":17460},'
    '"header_counts":{},"responses":17460,"mismatches":0,"response_hook":true}\n'
)
# Recorded: fastapi on uvicorn, /cached/items/{id} warm-up (X-Cache counted).
RECORDED_HEADERS = (
    '{"format":"lab-wrk/1","threads":1,"duration_us":1003778,"requests":616,"bytes":403430,'
    '"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},"latency_us":{"min":32016,'
    '"mean":104871.000,"stdev":66893.813,"max":449330,"p50":75766,"p75":122401,"p90":176807,'
    '"p99":388572,"p99_9":449330},"statuses":{"200":616},"header_counts":{"HIT":468,"MISS":148},'
    '"responses":616,"mismatches":0,"response_hook":true}'
)


def test_recorded_sample_parses() -> None:
    result = load.parse_result(RECORDED)
    assert result.requests == 17460
    assert result.statuses == {200: 17460}
    assert result.rps == pytest.approx(17460 / 1.005606)
    assert result.bytes_per_response == pytest.approx(2653920 / 17460)
    assert result.latency_us["p99_9"] == 25979
    assert result.socket_errors == 0
    assert result.response_hook is True
    data = result.to_json()
    assert data["statuses"] == {"200": 17460}
    json.dumps(data)  # serialisable as it is written into a cell


def test_header_counts_and_errors() -> None:
    result = load.parse_result(RECORDED_HEADERS)
    assert result.header_counts == {"HIT": 468, "MISS": 148}
    text = RECORDED.replace('"read":0', '"read":3').replace('"timeout":0', '"timeout":2')
    assert load.parse_result(text).socket_errors == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "does not parse"),
        ('{"format":"other"}', "is not lab-wrk/1"),
        (RECORDED.replace('"p99_9":25979', '"p99_8":1'), "p99_9"),
        (RECORDED.replace('"requests":17460,', ""), "lacks a field"),
    ],
)
def test_bad_reports_are_errors(text: str, message: str) -> None:
    with pytest.raises(load.LoadError, match=message):
        load.parse_result(text)


def test_zero_duration_has_zero_rate() -> None:
    result = load.parse_result(RECORDED.replace('"duration_us":1005606', '"duration_us":0'))
    assert result.rps == 0.0


def test_wrk_env_carries_the_scenario(tmp_path: Path) -> None:
    env = load.wrk_env(scenario("items-post"), tmp_path / "out.json", seed=7)
    assert env["LAB_WRK_METHOD"] == "POST"
    assert env["LAB_WRK_BODY"].startswith('{"name":')
    assert env["LAB_WRK_HEADERS"] == "Content-Type: application/json"
    assert env["LAB_WRK_SEED"] == "7"
    env = load.wrk_env(scenario("items-id"), tmp_path / "out.json", seed=1)
    assert (env["LAB_WRK_PATH"], env["LAB_WRK_ID_MIN"], env["LAB_WRK_ID_MAX"]) == (
        "/items/{id}",
        "1",
        "100000",
    )
    env = load.wrk_env(scenario("report-gzip"), tmp_path / "out.json", seed=1)
    assert env["LAB_WRK_EXPECT_HEADER"] == "content-encoding: gzip"
    env = load.wrk_env(scenario("cached-items-hit"), tmp_path / "out.json", seed=1)
    assert env["LAB_WRK_COUNT_HEADER"] == "x-cache"


def test_lua_script_writes_every_field_parse_result_reads() -> None:
    lua = load.LUA_SCRIPT.read_text()
    for key in (
        "duration_us",
        "requests",
        "bytes",
        "errors",
        "latency_us",
        "statuses",
        "header_counts",
        "responses",
        "mismatches",
        "p99_9",
        'thread:get("statuses")',
    ):
        assert key in lua

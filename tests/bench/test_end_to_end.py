"""One real short run: wrk, the Lua script, a real server and its floors, pinned.

Runs on the test session's seeded services (the ``services`` fixture: the configured URLs
or private embedded ones). Needs wrk on PATH: without it the test fails with the install
command, because a harness test that silently does not run proves nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import load, preflight
from bench.results import RunDir
from lab.cli import main


@pytest.fixture(scope="module")
def ready(services: Any) -> Iterator[None]:
    assert load.find_wrk() is not None, f"wrk not found: {preflight.WRK_INSTALL}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAB_DATABASE_URL", services.database_url)
        env.setenv("LAB_REDIS_URL", services.redis_url)
        preflight.check_seeded(services.database_url)
        yield


def test_lab_bench_writes_a_small_result_set(ready: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "bench",
            "--framework",
            "fastapi",
            "--server",
            "uvicorn",
            "--scenario",
            "json",
            "--repeat",
            "1",
            "--duration",
            "2",  # long enough for the connection snapshot before the window ends
            "--out",
            str(out),
        ]
    )
    assert code == 0
    run = RunDir(out)
    manifest = run.read_manifest()
    assert manifest["schema"] == "lab-bench/manifest"
    assert manifest["wrk"]["version"].startswith("wrk")
    assert manifest["services"]["postgresql"] and manifest["services"]["redis"]
    assert manifest["method"]["mode"] == "full"
    assert manifest["method"]["concurrency"] == [8, 64, 256]
    assert manifest["packages"]["fastapi"]
    assert manifest["machine"]["cpus_logical"] >= 1
    cells = {c["cell_id"]: c for c in run.iter_cells()}
    targets = ("fastapi-uvicorn", "raw_asgi-uvicorn", "hello_fastapi-uvicorn")
    assert sorted(cells) == sorted(f"{t}__json__c{c}__r1" for t in targets for c in (8, 64, 256))
    for cell in cells.values():
        assert cell["outcome"] == "ok", (cell["cell_id"], cell["reasons"])
        assert cell["load"]["requests"] > 0
        assert cell["load"]["statuses"] == {"200": cell["load"]["requests"]}
        assert cell["load"]["mismatches"] == 0
        assert cell["load"]["latency_us"]["p50"] <= cell["load"]["latency_us"]["p99"]
        # wrk's connections, read from the kernel near the window's end
        shares = cell["load"]["requests_per_connection"]
        seen = shares["connections_seen"]
        if cell["concurrency"] == 8:
            assert seen == 8  # a handful of connections: every one is established by then
        # On a loaded machine some of 256 handshakes are still being retried; a connection
        # with no socket counts as served nothing, so the least share tells of it.
        assert 0 < seen <= cell["concurrency"]
        if seen < cell["concurrency"]:
            assert shares["min"] == 0
        assert 0 <= shares["min"] <= shares["median"] <= shares["max"]
        assert shares["max"] * cell["concurrency"] >= cell["load"]["requests"] / 4
        assert cell["server"]["cpu_s_per_1k"] > 0
        assert 0 < cell["server"]["system_s"] <= cell["server"]["cpu_s"]  # sockets: kernel time
        # an event loop that waits for its sockets blocks now and then: voluntary switches
        assert cell["server"]["voluntary_switches"] > 0
        assert cell["server"]["switches_per_req"][0] > 0
        assert cell["server"]["peak_rss_bytes"] > 10 * 2**20
        if manifest["pinning"]["enabled"]:
            assert cell["server"]["affinity"] == manifest["pinning"]["server_cpus"]
    summary = json.loads(run.summary.read_text())
    [row] = [
        r for r in summary["rows"] if r["target"] == "fastapi-uvicorn" and r["concurrency"] == 64
    ]
    assert row["floors"]["server"]["target"] == "raw_asgi-uvicorn"
    assert row["floors"]["server"]["rps_ratio"] > 0
    assert row["floors"]["framework"]["target"] == "hello_fastapi-uvicorn"
    assert (out / "raw" / "fastapi-uvicorn__json__c64__r1.wrk.json").exists()
    # the run ends on its report: tables, the picker and the HTML page, written into it
    for name in ("README.md", "picker.md", "report.html"):
        assert (out / name).stat().st_size > 0, name


def test_lab_bench_at_a_fixed_rate_records_costs_and_reads_them_against_the_floor(
    ready: None, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    pair = ["--framework", "fastapi", "--server", "uvicorn", "--scenario", "db"]
    short = ["--repeat", "2", "--duration", "1", "--warmup", "0", "--out", str(out)]
    code = main(["bench", "--rate", "300", *pair, "--scenario", "json", *short])
    assert code == 0
    run = RunDir(out)
    manifest = run.read_manifest()
    assert manifest["method"]["rates"] == ["300"]
    assert manifest["method"]["concurrency"] == [64]  # the generator's pool, not a sweep
    assert manifest["loadgen"]["source"] == "bench/loadgen/loadgen.c"
    cells = {c["cell_id"]: c for c in run.iter_cells()}
    assert "fastapi-uvicorn__db__c64__q300__r2" in cells
    for cell in cells.values():
        assert cell["outcome"] == "ok", (cell["cell_id"], cell["reasons"])
        load = cell["load"]
        assert load["tool"] == "lab-loadgen"
        assert load["offered_rps"] == 300
        assert load["rps"] >= 0.98 * 300
        assert "rate-not-held" not in cell["flags"]
        assert set(load["latency_us"]) >= {"p50", "p75", "p90", "p99", "p99_9"}
        assert cell["cost"]["server_cpu_us_per_request"] > 0
    db = cells["fastapi-uvicorn__db__c64__q300__r1"]["cost"]
    # the pair's queries show up as PostgreSQL's CPU, billed per request beside the server's
    assert db["services_cpu_us_by_service"]["postgresql"] > 0
    assert db["services_unmeasured"] == []
    summary = json.loads(run.summary.read_text())
    [row] = [r for r in summary["rows"] if r["key"] == "fastapi-uvicorn__json__c64__q300"]
    assert row["rate"] == 300 and row["rate_held"] is True
    assert row["rank"] is not None
    ratio = row["cost"]["server_cpu_ratio_to_raw"]
    assert ratio["rounds"] == 2 and ratio["median"] > 1  # the framework costs CPU
    assert len(ratio["ci95"]) == 2
    assert main(["report", str(out)]) == 0
    assert "### json at 300 req/s (64 connections)" in (out / "README.md").read_text()

"""Whole runs with a fake load tool (``fake_wrk.py``): results layout, resume, Ctrl-C, a pair
that does not start. The real-wrk run is in ``test_end_to_end.py``."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.method import method_for
from bench.plan import build_plan
from bench.preflight import ServiceUrls
from bench.reporting import load, write_report
from bench.results import RunDir
from bench.runner import Runner
from bench.targets import Target, select_targets
from bench.ui import PlainUI
from lab import matrix
from lab.cli import main
from lab.scenarios import scenario
from tests.support.httpserver import serving

FAKE_WRK = Path(__file__).with_name("fake_wrk.py")
BODIES = {
    "/json": ("application/json", b'{"message":"Hello, World!"}'),
    "/plaintext": ("text/plain", b"Hello, World!"),
    "/health": ("application/json", b'{"status":"ok"}'),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        media, body = BODIES.get(self.path, ("text/plain", b"no"))
        self.send_response(200 if self.path in BODIES else 404)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serving(_Handler) as url:
        yield url


@pytest.fixture
def fake_wrk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wrapper = tmp_path / "wrk"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_WRK}" "$@"\n')
    wrapper.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_WRK_LOG", str(log))
    return wrapper


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _bench(url: str, wrk: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "bench",
            "--target",
            url,
            "--target-name",
            "fake",
            "--scenario",
            "json",
            "--scenario",
            "plaintext",
            "--repeat",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--concurrency",
            "8",
            "--no-pin",
            "--wrk",
            str(wrk),
            "--out",
            str(out),
            *extra,
        ]
    )


def test_results_layout_and_resume(
    server_url: str, fake_wrk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    assert _bench(server_url, fake_wrk, out) == 0
    run = RunDir(out)
    cells = {c["cell_id"]: c for c in run.iter_cells()}
    assert sorted(cells) == [
        f"fake-external__{s}__c8__r{r}" for s in ("json", "plaintext") for r in (1, 2)
    ]
    assert len(_calls(tmp_path)) == 4  # no warm-up: one load run per cell
    cell = cells["fake-external__json__c8__r1"]
    assert (cell["schema"], cell["schema_version"], cell["outcome"]) == ("lab-bench/cell", 1, "ok")
    assert cell["load"]["rps"] == 800.0
    assert cell["checks"]["before"]["ok"] and cell["checks"]["after"]["ok"]
    assert cell["client"]["cpu_s"] >= 0
    summary = json.loads(run.summary.read_text())
    assert summary["schema"] == "lab-bench/summary"
    assert summary["cells"] == {"ok": 4, "failed": 0, "error": 0}
    [json_row] = [r for r in summary["rows"] if r["scenario"] == "json"]
    assert (json_row["repeats"], json_row["rps"]["spread"], json_row["rank"]) == (2, 0.0, 1)
    assert not list(out.glob("**/*.tmp"))

    # Resume: a missing cell and an ``error`` cell are run again; the rest are kept.
    run.cell_path("fake-external__plaintext__c8__r2").unlink()
    errored = json.loads(run.cell_path("fake-external__json__c8__r1").read_text())
    errored["outcome"] = "error"
    run.cell_path("fake-external__json__c8__r1").write_text(json.dumps(errored))
    kept = run.cell_path("fake-external__json__c8__r2").read_text()
    assert _bench(server_url, fake_wrk, out) == 0
    assert len(_calls(tmp_path)) == 6
    assert run.cell_path("fake-external__json__c8__r2").read_text() == kept
    assert {c["outcome"] for c in run.iter_cells()} == {"ok"}
    manifest = run.read_manifest()
    assert len(manifest["sessions"]) == 2
    assert manifest["method"]["order"] == manifest["sessions"][1]["method"]["order"] == "neighbours"
    # Each cell names the session that measured it; a resumed session records its machine.
    sessions = {c["cell_id"]: c["session"] for c in run.iter_cells()}
    assert sessions["fake-external__json__c8__r2"] == 0
    assert (
        sessions["fake-external__json__c8__r1"] == sessions["fake-external__plaintext__c8__r2"] == 1
    )
    resumed = manifest["sessions"][1]
    assert resumed["machine"]["boot_id"] == manifest["machine"]["boot_id"]
    assert resumed["packages_changed"] == {}
    # The report says the run was built across sessions and which tables mix them.
    report = load(out)
    lines = report.session_lines()
    assert [line.split(":")[0] for line in lines] == ["session 1", "session 2"]
    assert "2 cells: json, plaintext; each pair next to its floors" in lines[1]
    write_report(report, with_plots=False)
    readme = (out / "README.md").read_text()
    assert "Built across sessions" in readme
    json_table = readme.split("## json @ 8 connections")[1].split("##")[0]
    assert "> Measured across sessions 1, 2." in json_table

    # Nothing left to do: no load run at all.
    assert _bench(server_url, fake_wrk, out) == 0
    assert len(_calls(tmp_path)) == 6
    assert manifest["sessions"][1]["env"] == manifest["env"]

    # Nor is a resume under a server setting given by environment, which no argv shows.
    monkeypatch.setenv("GRANIAN_TASK_IMPL", "rust")
    assert _bench(server_url, fake_wrk, out) == 2
    monkeypatch.delenv("GRANIAN_TASK_IMPL")

    # A resume that would measure differently is refused.
    assert (
        main(
            [
                "bench",
                "--target",
                server_url,
                "--target-name",
                "fake",
                "--scenario",
                "json",
                "--duration",
                "2",
                "--warmup",
                "0",
                "--no-pin",
                "--wrk",
                str(fake_wrk),
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_a_resume_on_another_commit_or_boot_is_refused_unless_allowed(
    server_url: str,
    fake_wrk: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    assert _bench(server_url, fake_wrk, out) == 0
    run = RunDir(out)
    run.cell_path("fake-external__json__c8__r2").unlink()
    data = run.read_manifest()
    data["git"]["commit"] = "0" * 40
    data["machine"]["boot_id"] = "another-boot"
    run.manifest.write_text(json.dumps(data))
    assert _bench(server_url, fake_wrk, out) == 2
    message = capsys.readouterr().err
    assert "on boot 'another-boot'" in message and "at commit 000000000000" in message
    assert not run.cell_path("fake-external__json__c8__r2").exists()
    assert _bench(server_url, fake_wrk, out, "--allow-mixed") == 0
    assert run.cell_path("fake-external__json__c8__r2").exists()
    assert len(run.read_manifest()["sessions"]) == 2


def test_unexpected_status_fails_the_cell(
    server_url: str, fake_wrk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_WRK_STATUS", "503")
    out = tmp_path / "run"
    assert _bench(server_url, fake_wrk, out) == 0
    assert _bench(server_url, fake_wrk, out, "--strict") == 1  # kept, so still failed
    cells = list(RunDir(out).iter_cells())
    assert {c["outcome"] for c in cells} == {"failed"}
    assert "800 response(s) with unexpected status 503" in cells[0]["reasons"]
    summary = json.loads(RunDir(out).summary.read_text())
    assert all(r["rank"] is None for r in summary["rows"])


@pytest.mark.usefixtures("ctrl_c_raises")
def test_interrupt_keeps_finished_cells(
    server_url: str, fake_wrk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_WRK_INTERRUPT_AT", "3")
    out = tmp_path / "run"
    assert _bench(server_url, fake_wrk, out) == 130
    assert len(list(RunDir(out).iter_cells())) == 2
    assert json.loads(RunDir(out).summary.read_text())["cells"]["ok"] == 2
    interrupted = _calls(tmp_path)[2]["pid"]
    assert not psutil.pid_exists(interrupted)  # the load tool was stopped and reaped
    monkeypatch.delenv("FAKE_WRK_INTERRUPT_AT")
    assert _bench(server_url, fake_wrk, out) == 0
    assert len(list(RunDir(out).iter_cells())) == 4


def _free_port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_pair_that_does_not_start_is_recorded_and_the_matrix_goes_on(
    fake_wrk: Path, tmp_path: Path
) -> None:
    broken = matrix.Pair(
        matrix.Framework("broken", "asgi", "nowhere:app", ("crash",)),
        matrix.Server("crash", "exits at once", "{python} -c 'raise SystemExit(3)' {port}"),
    )
    [floor] = select_targets(("raw_asgi",), ("uvicorn",))
    method = method_for(quick=True, warmup_s=0, duration_s=1, pin=False)
    targets = [Target(broken, "floor"), floor]
    groups = build_plan(targets, [scenario("json")], method)
    run = RunDir(tmp_path / "run")
    run.create()
    Runner(
        run,
        method,
        wrk=str(fake_wrk),
        ui=PlainUI(),
        services=ServiceUrls("postgresql://unused", "redis://unused"),
    ).execute(groups)
    cells = {c["target"]["id"]: c for c in run.iter_cells()}
    assert cells["broken-crash"]["outcome"] == "error"
    assert cells["broken-crash"]["reasons"][0].startswith("server did not start")
    ok = cells["raw_asgi-uvicorn"]
    assert ok["outcome"] == "ok", ok["reasons"]
    assert ok["server"]["cpu_s"] >= 0 and ok["server"]["peak_rss_bytes"] > 0
    assert ok["server"]["cpu_s_per_1k"] is not None
    pid = ok["server"]["pid"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    port = int(ok["server"]["argv"][ok["server"]["argv"].index("--port") + 1])
    assert _free_port_is_free(port)
    assert os.path.exists(run.raw / "raw_asgi-uvicorn__default__r1.server.log")


def test_preflight_names_the_install_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "bench",
            "--framework",
            "raw_asgi",
            "--server",
            "uvicorn",
            "--scenario",
            "json",
            "--wrk",
            str(tmp_path / "no-such-wrk"),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "wrk not found" in err and "apt-get install -y wrk" in err
    assert not (tmp_path / "run").exists()


def test_unknown_names_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--scenario", "nope", "--list"]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err
    assert main(["bench", "--framework", "django", "--list"]) == 2
    assert "unknown framework 'django'" in capsys.readouterr().err


def test_the_reference_plans_saturation_fixed_rates_and_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["bench", "--reference", "--framework", "fastapi", "--server", "uvicorn", "--list"])
        == 0
    )
    out, err = capsys.readouterr()
    planned = {line.split()[0] for line in out.splitlines()}
    for rnd in range(1, 6):  # five interleaved rounds, each pair beside its raw callable
        for offered in ("", "__q1000", "__q50pct"):
            assert f"fastapi-uvicorn__db__c64{offered}__r{rnd}" in planned
            assert f"raw_asgi-uvicorn__json__c64{offered}__r{rnd}" in planned
    assert not any(p.startswith("hello_") for p in planned)  # the raw callables normalise
    assert "fastapi-uvicorn__updates-5" in planned and "raw_asgi-uvicorn__plaintext" in planned
    assert "45 cells, 10 server starts, 8 instruction counts" in err


def test_the_reference_declares_its_own_scenarios_and_rates(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert main(["bench", "--reference", "--rate", "500", "--out", str(out)]) == 2
    assert "--reference declares its own" in capsys.readouterr().err
    assert not out.exists()

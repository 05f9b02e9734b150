"""The fixed-rate generator against servers whose latency is known (bench/calibration.py).

These hold the generator to what a fixed-rate cell needs: latency measured from each
request's intended send time, so a server that stalls cannot hide the stall, and a fixed
delay read back as itself. They assert what the generator reports, not how fast anything ran.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import load, loadgen
from lab import matrix
from lab.cli import main
from lab.scenarios import scenario
from tests.support.processes import ManagedProcess, free_port

HOST = "127.0.0.1"
Start = Callable[..., str]


@pytest.fixture
def calibration_server(tmp_path: Path) -> Iterator[Start]:
    """Starts ``python -m bench.calibration KIND`` and returns its base URL."""
    started: list[ManagedProcess] = []

    def start(kind: str, *extra: str) -> str:
        port = free_port(HOST)
        proc = ManagedProcess(
            name=f"calibration-{kind}",
            argv=[sys.executable, "-m", "bench.calibration", kind, "--port", str(port), *extra],
            env=dict(os.environ),
            cwd=matrix.REPO_ROOT,
            log_dir=tmp_path,
            health_url=f"http://{HOST}:{port}/health",
        )
        started.append(proc.start())
        return f"http://{HOST}:{port}"

    yield start
    for proc in started:
        proc.stop()


def offer(base_url: str, tmp_path: Path, *, rate: float, seconds: float) -> load.LoadResult:
    run = loadgen.run_rate_load(
        base_url,
        scenario("plaintext"),
        rate=rate,
        connections=64,
        duration_s=seconds,
        timeout_s=5,
        out=tmp_path / "loadgen.json",
        text_out=tmp_path / "loadgen.txt",
        seed=1,
        cpus=None,
    )
    return run.result


def test_a_fixed_delay_reads_back_as_itself(calibration_server: Start, tmp_path: Path) -> None:
    base = calibration_server("delay", "--ms", "10")
    result = offer(base, tmp_path, rate=500, seconds=3)
    assert result.offered_rps == 500
    assert result.requests >= 0.98 * 500 * 3, result
    assert result.socket_errors == 0
    assert abs(result.latency_us["p50"] - 10_000) <= 1_000, result.latency_us


def test_a_stall_shows_in_the_latency_from_intended_send(
    calibration_server: Start, tmp_path: Path
) -> None:
    """Half of every second frozen: half of the requests fall due in a pause and wait up to
    500 ms. Timed from the actual send, the same run looks almost clean."""
    base = calibration_server("freeze")
    result = offer(base, tmp_path, rate=500, seconds=4)
    assert result.requests >= 0.98 * 500 * 4, result
    assert result.latency_us["p75"] >= 150_000, result.latency_us
    assert result.service_latency_us is not None
    assert result.service_latency_us["p75"] < result.latency_us["p75"] / 10


def test_the_json_names_every_field_the_harness_reads(
    calibration_server: Start, tmp_path: Path
) -> None:
    base = calibration_server("delay", "--ms", "1")
    offer(base, tmp_path, rate=200, seconds=1)
    data = json.loads((tmp_path / "loadgen.json").read_text())
    assert data["format"] == load.RATE_FORMAT
    for series in ("latency_us", "service_latency_us", "send_lag_us"):
        assert set(load.PERCENTILES) <= set(data[series]), series
    assert data["statuses"] == {"200": data["requests"]}


def test_a_generator_that_cannot_connect_fails_and_records_nothing(tmp_path: Path) -> None:
    nobody = f"http://{HOST}:{free_port(HOST)}"
    with pytest.raises(load.LoadError, match="wrote no JSON"):
        offer(nobody, tmp_path, rate=100, seconds=1)
    assert not (tmp_path / "loadgen.json").exists()


@pytest.mark.parametrize(
    ("rate", "message"),
    [("0", "above 0"), ("-5", "above 0"), ("nan", "above 0"), ("60000", "above the 50,000")],
)
def test_a_rate_it_cannot_offer_is_refused_before_any_server_starts(
    rate: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(["bench", "--rate", rate, "--scenario", "json", "--out", str(out)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_revalidating_scenario_is_refused_at_a_fixed_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["bench", "--rate", "100", "--scenario", "cached-item-revalidate", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "closed-loop only" in capsys.readouterr().err


def test_the_generator_is_rebuilt_when_its_source_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = loadgen.build()
    assert first.parent == tmp_path / "pyweb-lab" and os.access(first, os.X_OK)
    assert loadgen.build() == first
    edited = tmp_path / "loadgen.c"
    edited.write_text(loadgen.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(loadgen, "SOURCE", edited)
    assert loadgen.build() != first

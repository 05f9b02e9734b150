"""bench/idle.py: a run holds its CPUs out of deep idle with a PM QoS request, and lets go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import idle
from bench.method import method_for
from bench.results import stored_method


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_the_request_is_written_held_and_withdrawn(tmp_path: Path) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    before = _open_fds()
    with idle.held_awake(True, device) as record:
        assert record["held"] and record["latency_us"] == 0
        assert device.read_bytes() == (0).to_bytes(4, "little")  # a native int32 of 0 µs
        assert len(_open_fds() - before) == 1  # held open for the whole block
    assert _open_fds() == before  # closed: the kernel withdraws the request


def test_nothing_is_touched_when_not_wanted_or_not_allowed(tmp_path: Path) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"untouched")
    with idle.held_awake(False, device) as record:
        assert record["requested"] is False and record["held"] is False
    assert device.read_bytes() == b"untouched"
    missing = tmp_path / "no" / "such" / "device"
    with idle.held_awake(True, missing) as record:
        assert record["requested"] is True and record["held"] is False
        assert str(missing) in record["why_not"]


def test_cpuidle_names_the_driver_and_governor(tmp_path: Path) -> None:
    (tmp_path / "current_driver").write_text("haltpoll\n")
    (tmp_path / "current_governor_ro").write_text("haltpoll\n")
    assert idle.cpuidle(tmp_path) == {"driver": "haltpoll", "governor": "haltpoll"}
    assert idle.cpuidle(tmp_path / "absent") == {"driver": None, "governor": None}


def test_the_method_holds_the_cpus_awake_unless_told_not_to() -> None:
    assert method_for(quick=True).awake_cpus  # [bench] awake_cpus = true
    assert not method_for(quick=True, awake=False).awake_cpus  # --allow-idle
    assert "awake_cpus" in method_for(quick=False).comparable()  # a resumed run must match
    # runs recorded before the field let idle CPUs halt
    assert stored_method({"duration_s": 2.0})["awake_cpus"] is False

"""The manifest: machine, software, method, with no secret in it."""

from __future__ import annotations

import json
import platform

import pytest

from bench import manifest
from bench.method import method_for


def test_redact_url() -> None:
    assert manifest.redact_url("postgresql://lab:s3cret@db:5432/lab") == (
        "postgresql://lab:***@db:5432/lab"
    )
    assert manifest.redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_collect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_DATABASE_URL", "postgresql://u:hunter2@127.0.0.1/lab")
    method = method_for(quick=True)
    data = manifest.collect(
        run_id="r1",
        argv=["lab", "bench", "--quick"],
        method=method.to_json(),
        pinning={"enabled": method.pin},
        wrk={"version": "wrk 4.1.0"},
        services=manifest.service_versions(None, None),
        selection={"targets": []},
    )
    assert data["run_id"] == "r1"
    assert data["command"] == ["lab", "bench", "--quick"]
    assert data["python"]["version"] == platform.python_version()
    assert data["machine"]["cpus_logical"] >= 1
    assert data["machine"]["kernel"] == platform.release()
    assert "cpu_model" in data["machine"]
    assert {"pytest", "psutil", "rich"} <= set(data["packages"])
    assert set(data["git"]) == {"commit", "branch", "dirty"}
    assert data["method"]["mode"] == "quick"
    assert data["services"]["postgresql"] is None
    assert len(data["sessions"]) == 1
    text = json.dumps(data)
    assert "hunter2" not in text
    assert data["env"]["LAB_DATABASE_URL"] == "postgresql://u:***@127.0.0.1/lab"

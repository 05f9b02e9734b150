"""The manifest: machine, software, method, with no secret in it."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

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
    monkeypatch.setenv("GRANIAN_RUNTIME_MODE", "mt")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # a shell's habit, not a server setting
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")  # slows every event loop down
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
    # a server setting given by environment is part of what was measured
    assert data["env"]["GRANIAN_RUNTIME_MODE"] == "mt"
    assert data["env"]["PYTHONASYNCIODEBUG"] == "1"
    assert "UNRELATED_SETTING" not in data["env"] and "PYTHONUNBUFFERED" not in data["env"]
    # records written while every PYTHON* variable was kept compare on the settings alone
    assert manifest.server_settings({"PYTHONUNBUFFERED": "1", "LAB_REDIS_URL": "redis://x"}) == {}


def _commit(repo: Path, message: str) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", message)
    return git("rev-parse", "HEAD")


def test_plan_order_is_what_the_method_recorded_else_what_the_commits_history_says(
    tmp_path: Path,
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    before, since, after = (_commit(tmp_path, m) for m in ("old plan", "new plan", "later"))

    def order(method: dict[str, str], commit: str | None) -> str:
        return manifest.plan_order(method, commit, root=tmp_path, since=since)

    assert order({}, before) == "pairs-then-floors"
    assert order({}, since) == order({}, after) == "neighbours"
    assert order({}, "0" * 40) == order({}, None) == "unknown"  # not in the history
    assert order({"order": "neighbours"}, before) == "neighbours"  # recorded wins
    # A run's sessions: the first is the manifest's own method and commit.
    data = {
        "git": {"commit": before},
        "method": {},
        "sessions": [
            {"git": {"commit": before}},
            {"git": {"commit": after}, "method": {}},
            {"git": {"commit": before}, "method": {"order": "neighbours"}},
        ],
    }
    assert (
        manifest.session_orders(data, root=tmp_path, since=since)
        == ["pairs-then-floors"] + ["neighbours"] * 2
    )


def test_a_new_method_records_the_plans_order() -> None:
    assert method_for(quick=True).to_json()["order"] == "neighbours"

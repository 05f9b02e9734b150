"""``lab bench --instances N``: every target measured through nginx in front of N instances
(lab/scaleout.py), the topology recorded in each cell and in the method, and nothing left
running afterwards. Needs wrk and nginx: without them the test fails saying what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench import load, preflight
from bench.results import RunDir
from lab import scaleout
from lab.cli import main


@pytest.fixture(scope="module")
def ready(services: Any) -> Iterator[None]:
    assert load.find_wrk() is not None, f"wrk not found: {preflight.WRK_INSTALL}"
    scaleout.find_nginx()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAB_DATABASE_URL", services.database_url)
        env.setenv("LAB_REDIS_URL", services.redis_url)
        preflight.check_seeded(services.database_url)
        yield


def _args(out: Path, instances: int) -> list[str]:
    return [
        "bench", "--framework", "fastapi", "--server", "uvicorn", "--scenario", "json",
        "--repeat", "1", "--duration", "1", "--warmup", "0", "--concurrency", "8",
        "--instances", str(instances), "--out", str(out),
    ]  # fmt: skip


def _topology_processes() -> set[int]:
    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "lab-nginx-" in line or "lab.scaleout" in line:
            found.add(proc.pid)
    return found


def test_bench_through_nginx_records_the_topology(ready: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    before = _topology_processes()
    assert main(_args(out, 2)) == 0
    run = RunDir(out)
    assert run.read_manifest()["method"]["instances"] == 2
    cells = {c["cell_id"]: c for c in run.iter_cells()}
    # the pair and its floors, each as 2 instances behind nginx
    targets = ("fastapi-uvicorn", "raw_asgi-uvicorn", "hello_fastapi-uvicorn")
    assert sorted(cells) == sorted(f"{t}__json__c8__r1" for t in targets)
    for cell in cells.values():
        assert cell["outcome"] == "ok", (cell["cell_id"], cell["reasons"])
        topo = cell["topology"]
        assert topo["kind"] == "nginx" and topo["instances"] == 2
        assert topo["proxy"]["name"] == "nginx" and topo["proxy"]["version"]
        argv = cell["server"]["argv"]
        assert argv[argv.index("-m") + 1] == "lab.scaleout"
        assert argv.count("{port}") == 1  # the instance command, filled per instance
        assert cell["load"]["statuses"] == {"200": cell["load"]["requests"]}
        # the sampled tree is the supervisor, nginx and both instances
        # supervisor, 2 instances, nginx's master and worker
        assert cell["server"]["processes"] >= 5, cell["server"]
        assert not psutil.pid_exists(cell["server"]["pid"]) or (
            psutil.Process(cell["server"]["pid"]).status() == psutil.STATUS_ZOMBIE
        )
    assert _topology_processes() <= before, "the run left nginx or a supervisor running"
    # a run measured through 2 instances is not resumed with another topology
    assert main(_args(out, 1)) == 2

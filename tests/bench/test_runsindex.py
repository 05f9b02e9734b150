"""results/README.md's table of committed runs: generated from the folders, checked current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import runsindex


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _cell(target: str, scenario: str, conc: int, outcome: str, start: str, end: str) -> Any:
    return {
        "target": {"id": target},
        "scenario": {"id": scenario},
        "concurrency": conc,
        "outcome": outcome,
        "started_at": start,
        "finished_at": end,
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    bench = root / "20260101T000000Z-full-abc"
    where = {
        "git": {"commit": "abcdef0123456789", "dirty": True},
        "machine": {"cpu_model": "Test CPU"},
        "services": {"postgresql": "18.6 (Debian)", "redis": "7.0.15"},
    }
    _write(
        bench / "manifest.json",
        {
            **where,
            "command": ["lab", "bench", "--scenario", "db"],
            "method": {"mode": "full", "repeats": 3, "duration_s": 10},
            "sessions": [{}, {}],
        },
    )
    cells = [
        _cell("a-uvicorn", "db", 8, "ok", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:12+00:00"),
        _cell(
            "b-uvicorn",
            "db",
            64,
            "failed",
            "2026-01-01T00:01:00+00:00",
            "2026-01-01T00:02:00+00:00",
        ),
    ]
    for i, cell in enumerate(cells):
        _write(bench / "cells" / f"{i}.json", cell)
    (bench / "README.md").write_text("tables")
    memory = root / "20260102T000000Z-memory-abc"
    _write(
        memory / "memory.json",
        {
            **where,
            "command": ["lab", "memory"],
            # the service URL is where it ran; the granian setting is how
            "env": {"LAB_DATABASE_URL": "postgresql://db/lab", "GRANIAN_TASK_IMPL": "rust"},
            "method": {"small": 1000, "large": 100000},
            "results": [
                {"pair": "a-uvicorn", "passed": True},
                {"pair": "a-uvicorn", "passed": False},
            ],
        },
    )
    (memory / "memory.md").write_text("table")
    (root / "scratch").mkdir()  # not a run: left out
    (root / "README.md").write_text(f"# Runs\n\n{runsindex.BEGIN}\n{runsindex.END}\n\nprose\n")
    return root


def test_index_describes_each_run_from_its_own_records(results: Path) -> None:
    table = runsindex.index(results).splitlines()
    assert len(table) == 4  # header, rule, two runs; the scratch folder is no run
    bench, memory = table[2], table[3]
    assert "| full | `lab bench --scenario db` |" in bench
    assert "2 targets; db; 8/64 connections; 3 x 10 s" in bench
    assert "1 failed, 1 ok; 2.0 min first cell to last; 2 sessions" in bench
    assert "Test CPU, PostgreSQL 18.6, Redis 7.0.15; commit abcdef01 (dirty)" in bench
    assert "[README.md](20260101T000000Z-full-abc/README.md)" in bench
    assert "| memory | `GRANIAN_TASK_IMPL=rust lab memory` |" in memory
    assert "1 of 2 pass" in memory
    assert "[memory.md](20260102T000000Z-memory-abc/memory.md)" in memory


def test_update_fills_the_block_and_check_notices_a_new_run(results: Path) -> None:
    readme = results / "README.md"
    assert runsindex.main([str(results), "--check", str(readme)]) == 1  # empty block: stale
    assert runsindex.main([str(results), "--update", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Runs\n") and text.endswith("\nprose\n")
    assert runsindex.main([str(results), "--check", str(readme)]) == 0
    _write(results / "20260103T000000Z-instructions-abc" / "instructions.json", {"results": []})
    assert runsindex.main([str(results), "--check", str(readme)]) == 1


def test_the_committed_index_lists_every_committed_run() -> None:
    readme = runsindex.RESULTS_ROOT / "README.md"
    assert runsindex.main([str(runsindex.RESULTS_ROOT), "--check", str(readme)]) == 0, (
        "results/README.md is stale: python -m bench.runsindex --update results/README.md"
    )

"""docs/performance.md's tables come from results: the generator reads a run's summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import perfdoc


def _row(target: str, scenario: str, rps: float, server: float | None, fw: float | None) -> Any:
    def ref(value: float | None) -> Any:
        return {"target": "floor", "rps_ratio": value}

    return {
        "target": target,
        "role": "pair",
        "scenario": scenario,
        "concurrency": 64,
        "outcome": "ok",
        "rps": {"median": rps},
        "floors": {"server": ref(server), "framework": ref(fw)},
    }


def test_floor_tables_check_each_goal(tmp_path: Path) -> None:
    rows = [
        _row("a-x", "json", 20_000, 0.5, 0.95),
        _row("b-x", "json", 10_000, 0.3, 0.70),
        _row("a-x", "db", 5_000, None, 0.81),
        {**_row("a-x", "fortunes", 4_000, None, None)},
        {**_row("a-x", "json", 1, 1.0, 1.0), "concurrency": 8},  # another level: left out
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": "r1", "rows": rows}))
    text = perfdoc.floor_tables(tmp_path)
    assert "| a-x | 20,000 | 0.50 | 0.95 | met |" in text
    assert "| b-x | 10,000 | 0.30 | 0.70 | **not met** |" in text
    assert "| a-x | 5,000 | - | 0.81 | met |" in text
    assert "| a-x | 4,000 | - | - | - |" in text
    assert "| a-x | 1 |" not in text
    assert perfdoc.main([str(tmp_path)]) == 0

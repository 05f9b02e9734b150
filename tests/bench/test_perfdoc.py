"""docs/performance.md's tables come from results: the generator reads a run's summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import perfdoc


def _row(
    target: str,
    scenario: str,
    rps: float,
    server: float | None,
    fw: float | None,
    fw_rounds: tuple[float, float, float] | None = None,
) -> Any:
    def ref(value: float | None, rounds: tuple[float, float, float] | None = None) -> Any:
        per_round = None
        if rounds is not None:
            per_round = dict(zip(("median", "min", "max"), rounds, strict=True)) | {"rounds": 3}
        return {"target": "floor", "rps_ratio": value, "per_round": per_round}

    return {
        "target": target,
        "role": "pair",
        "scenario": scenario,
        "concurrency": 64,
        "outcome": "ok",
        "rps": {"median": rps, "spread": 0.05},
        "cpu_s_per_1k": 0.2,
        "floors": {"server": ref(server), "framework": ref(fw, fw_rounds)},
    }


def test_floor_tables_check_each_goal(tmp_path: Path) -> None:
    rows = [
        _row("a-x", "json", 20_000, 0.5, 0.95),
        _row("b-x", "json", 10_000, 0.3, 0.70),
        # met on the ratio of medians, not round by round: judged on the lower, not met
        _row("c-x", "json", 18_000, 0.45, 0.93, (0.88, 0.85, 0.94)),
        _row("d-x", "json", 19_000, 0.47, 0.91, (0.92, 0.90, 0.97)),
        _row("a-x", "db", 5_000, None, 0.81),
        {**_row("a-x", "fortunes", 4_000, None, None)},
        {**_row("a-x", "json", 1, 1.0, 1.0), "concurrency": 8},  # another level: left out
        # the framework floor the rows name: half the CPU per request on json
        {**_row("floor", "json", 40_000, None, None), "role": "floor", "cpu_s_per_1k": 0.1},
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": "r1", "rows": rows}))
    text = perfdoc.floor_tables(tmp_path)
    assert "| a-x | 20,000 | 5% | 0.50 | 0.95 | - | 0.50 | met |" in text
    assert "| b-x | 10,000 | 5% | 0.30 | 0.70 | - | 0.50 | **not met** |" in text
    assert "| c-x | 18,000 | 5% | 0.45 | 0.93 | 0.88 (0.85-0.94) | 0.50 | **not met** |" in text
    assert "| d-x | 19,000 | 5% | 0.47 | 0.91 | 0.92 (0.90-0.97) | 0.50 | met |" in text
    assert "| a-x | 5,000 | 5% | - | 0.81 | - | - | met |" in text  # no db floor row in the run
    assert "| a-x | 4,000 | 5% | - | - | - | - | - |" in text
    assert "| a-x | 1 |" not in text
    assert perfdoc.main([str(tmp_path)]) == 0


def test_instruction_tables_are_headed_by_their_folders(tmp_path: Path) -> None:
    """Two runs started in the same second share a run id; the page must tell them apart."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"run_id": "r1", "rows": []}))
    folders = []
    for commit in ("aaaa111", "bbbb222"):
        folder = tmp_path / f"20261207T073942Z-instructions-{commit}"
        folder.mkdir()
        doc = {"run_id": "20261207T073943Z-instructions", "git": {"commit": commit}, "results": []}
        (folder / "instructions.json").write_text(json.dumps(doc))
        folders += ["--instructions", str(folder)]
    page = tmp_path / "performance.md"
    page.write_text(f"{perfdoc.BEGIN}\n{perfdoc.END}\n")
    assert perfdoc.main([str(run), *folders, "--update", str(page)]) == 0
    text = page.read_text()
    for commit in ("aaaa111", "bbbb222"):
        assert f"### Instructions per request: 20261207T073942Z-instructions-{commit}\n" in text
    assert "20261207T073943Z" not in text


def test_update_rewrites_only_the_generated_block(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    rows = [_row("a-x", "json", 20_000, 0.5, 0.95)]
    (run / "summary.json").write_text(json.dumps({"run_id": "r1", "rows": rows}))
    page = tmp_path / "performance.md"
    page.write_text(f"# Prose\n\n{perfdoc.BEGIN}\nold table\n{perfdoc.END}\n\nMore prose.\n")
    assert perfdoc.main([str(run), "--update", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# Prose\n\n")
    assert text.endswith(f"{perfdoc.END}\n\nMore prose.\n")
    assert "old table" not in text
    assert "| a-x | 20,000 | 5% | 0.50 | 0.95 | - | - | met |" in text


def test_quick_wall_time_reads_the_runs_own_record(tmp_path: Path) -> None:
    cells = tmp_path / "cells"
    cells.mkdir()
    times = [("2026-12-02T08:00:00.000Z", "2026-12-02T08:00:05.000Z"),
             ("2026-12-02T08:00:05.000Z", "2026-12-02T08:12:00.000Z")]  # fmt: skip
    for i, (start, end) in enumerate(times):
        (cells / f"c{i}.json").write_text(json.dumps({"started_at": start, "finished_at": end}))
    line = perfdoc.quick_wall_time(tmp_path)
    assert "2 cells, 12.0 minutes" in line and "**not met**" in line


def test_between_runs_puts_each_runs_ratio_side_by_side(tmp_path: Path) -> None:
    runs = []
    for name, commit, rows in [
        (
            "r1",
            "aaaaaaa1",
            [
                _row("a-x", "json", 1, 0.5, 0.89, (0.9, 0.88, 0.91)),
                _row("a-x", "db", 1, None, 0.78),
            ],
        ),
        (
            "r2",
            "bbbbbbb2",
            [
                _row("a-x", "json", 1, 0.5, 0.96, (0.95, 0.9, 0.97)),
                _row("b-x", "json", 1, 0.5, 0.9),
            ],
        ),
    ]:
        run = tmp_path / name
        run.mkdir()
        rows.append({**_row("a-x", "fortunes", 1, None, 0.5)})  # no goal: left out
        (run / "summary.json").write_text(json.dumps({"run_id": name, "rows": rows}))
        machine = {"cpu_model": "Some CPU"} if name == "r2" else {}
        # r1's rows have per-round ratios too (`lab report` adds them to old runs): only the
        # order the manifest recorded makes a run `neighbours`
        order = "neighbours" if name == "r2" else "pairs-then-floors"
        (run / "manifest.json").write_text(
            json.dumps({"git": {"commit": commit}, "machine": machine, "method": {"order": order}})
        )
        runs.append(run)
    text = perfdoc.between_runs(runs)
    assert (
        "| pair | scenario | `r1` (aaaaaaa) | `r2` (bbbbbbb; Some CPU; neighbours) | range |"
        in text
    )
    assert "| a-x | json | 0.89 | 0.96 | 0.07 |" in text
    assert "| b-x | json | - | 0.90 | - |" in text  # one run only: no range
    assert "| a-x | db | 0.78 | - | - |" in text
    assert "fortunes" not in text.split("\n\n", 1)[1]
    assert text.index("| a-x | json") < text.index("| b-x | json") < text.index("| a-x | db")
    assert perfdoc.main([str(runs[0]), "--between", str(runs[1])]) == 0


def _floor_row(target: str, scenario: str, by_round: dict[str, float], cpu_s_per_1k: float) -> Any:
    rps = sorted(by_round.values())
    return {
        "target": target,
        "role": "floor",
        "scenario": scenario,
        "concurrency": 64,
        "outcome": "ok",
        "rps": {"median": rps[len(rps) // 2], "by_round": by_round, "spread": 0.01},
        "cpu_s_per_1k": cpu_s_per_1k,
    }


def test_work_control_reads_what_the_work_added_against_its_warm_loop(tmp_path: Path) -> None:
    rows = [
        # 20 µs a request, then 30 (round 1) and 28 (rounds 2, 3): 10 and 8 µs more
        _floor_row("hello_x-srv", "json", {"1": 50_000, "2": 50_000, "3": 50_000}, 0.020),
        _floor_row(
            "hello_x-srv", "json-work", {"1": 1e6 / 30, "2": 1e6 / 28, "3": 1e6 / 28}, 0.0285
        ),
        _floor_row("raw_asgi-srv", "json", {"1": 100_000, "2": 100_000, "3": 100_000}, 0.010),
        _row("x-srv", "json", 40_000, 0.4, 0.8),  # a pair: never in the control
        _floor_row("raw_asgi-other", "json", {"1": 1.0, "2": 1.0, "3": 1.0}, 1.0),  # no work row
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": "r1", "rows": rows}))
    manifest = {
        "controls": {"app_work": {"loops": 400, "us": 6.0}},
        "pinning": {"enabled": True, "server_cpus": [0], "client_cpus": [1]},
        "idle": {"requested": True, "held": True},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    text = perfdoc.work_control(tmp_path)
    assert text is not None
    assert "CPUs held awake" in text and "400 turns" in text and "6.00 µs" in text
    # extra = 1e6 / median(work rps) - 20 = 8.0; by round 8.0 (8.0-10.0); CPU 8.5 = 1.4 x 6.0
    assert "| hello_x-srv | 20.0 | 28.0 | 8.0 | 8.0 (8.0-10.0) | 8.5 | 1.4 |" in text
    assert "raw_asgi" not in text and "| x-srv" not in text
    assert perfdoc.work_control(tmp_path, concurrency=8) is None  # nothing at that level
    page = tmp_path / "page.md"
    page.write_text(f"{perfdoc.BEGIN}\n{perfdoc.END}\n")
    assert perfdoc.main([str(tmp_path), "--update", str(page)]) == 0
    assert "### What a server charges for the app's own work" in page.read_text()

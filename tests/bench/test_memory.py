"""``lab memory`` (issue 8's streaming-memory goal): the item counting that proves a body
streamed everything, the table, and one real pair measured end to end."""

from __future__ import annotations

import json
from pathlib import Path

from bench import memory
from lab.cli import main


def test_items_in_counts_each_format() -> None:
    assert memory.items_in("ndjson", b'{"id":1}\n{"id":2}\n') == 2
    assert memory.items_in("csv", b"id,name\r\n1,a\r\n2,b\r\n3,c\r\n") == 3
    assert memory.items_in("json", b'[{"id":1},{"id":2}]') == 2
    assert memory.items_in("json", b'{"id":1}') == -1


def _result(pair: str, fmt: str, small: int, large: int) -> memory.Result:
    delta = large - small
    return memory.Result(
        pair, fmt, 1000, 100_000, 3, small, large, delta, memory.LIMIT_BYTES,
        delta < memory.LIMIT_BYTES, 1.5,
    )  # fmt: skip


def test_markdown_marks_failures() -> None:
    ok = _result("a-b", "ndjson", 80_000_000, 81_000_000)
    bad = _result("a-b", "json", 80_000_000, 95_000_000)
    text = memory.markdown([ok, bad], {"run_id": "r", "machine": {"cpus_logical": 2}})
    assert "| a-b | ndjson | 80.0 | 81.0 | 1.0 | 1.50 | pass |" in text
    assert "| a-b | json | 80.0 | 95.0 | 15.0 | 1.50 | **FAIL** |" in text
    assert "1 of 2 pass." in text


def test_lab_memory_measures_a_real_pair(lab_env: None, tmp_path: Path) -> None:
    code = main(
        ["memory", "--framework", "aiohttp", "--server", "aiohttp", "--format", "ndjson",
         "--rounds", "1", "--out", str(tmp_path)]
    )  # fmt: skip
    doc = json.loads((tmp_path / "memory.json").read_text())
    assert doc["schema"] == "lab.memory/1"
    assert doc["machine"]["cpus_logical"] >= 1 and doc["packages"]["aiohttp"]
    [row] = doc["results"]
    assert (row["pair"], row["format"], row["large_count"]) == (
        "aiohttp-aiohttp",
        "ndjson",
        100_000,
    )
    # A server holds tens of MB; the two peaks are real RSS figures, not zeros.
    assert row["small_peak_rss_bytes"] > 20_000_000 and row["large_peak_rss_bytes"] > 20_000_000
    assert row["delta_bytes"] == row["large_peak_rss_bytes"] - row["small_peak_rss_bytes"]
    assert code == (0 if row["passed"] else 1)
    assert "| aiohttp-aiohttp | ndjson |" in (tmp_path / "memory.md").read_text()
    assert list((tmp_path / "raw").glob("*.server.log"))


def test_lab_memory_rejects_unknown_format(tmp_path: Path) -> None:
    assert main(["memory", "--format", "xml", "--out", str(tmp_path)]) == 2

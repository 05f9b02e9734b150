"""``lab instructions``: the ratios and table from synthetic counts, the dump parsing, and
one real pair with its floor counted under callgrind end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import instructions
from lab.cli import main


def _r(target: str, role: str, fw: str | None, server: str, scenario: str, per: int) -> Any:
    return instructions.Result(target, role, fw, server, scenario, 100, 1, per * 100)


def test_ratios_read_each_pair_against_its_floors_on_the_same_server() -> None:
    results = [
        _r("fastapi-uvicorn", "pair", "fastapi", "uvicorn", "json", 250_000),
        _r("hello_fastapi-uvicorn", "floor", "fastapi", "uvicorn", "json", 200_000),
        _r("raw_asgi-uvicorn", "floor", None, "uvicorn", "json", 50_000),
        # the same floors on another server must not be taken for uvicorn's
        _r("hello_fastapi-granian", "floor", "fastapi", "granian", "json", 1_000),
        _r("fastapi-uvicorn", "pair", "fastapi", "uvicorn", "db", 500_000),
    ]
    rows = {(r["target"], r["scenario"]): r for r in instructions.ratios(results)}
    json_row = rows["fastapi-uvicorn", "json"]
    assert json_row["framework"]["ratio"] == pytest.approx(0.8)
    assert json_row["server"]["ratio"] == pytest.approx(0.2)
    assert "framework" not in rows["fastapi-uvicorn", "db"]  # no db floor measured
    text = instructions.markdown(results, {"run_id": "r", "method": {"requests": 100}})
    assert "| fastapi-uvicorn | json | 250.0k | 200.0k | 0.80 | 50.0k | 0.20 | - |" in text
    assert "| fastapi-uvicorn | db | 500.0k | - | - | - | - | - |" in text
    judged = instructions.markdown(results, {}, {"json": 0.9, "db": 0.8})
    assert "| 0.80 | 50.0k | 0.20 | **not met** (>= 0.90) |" in judged


def test_a_dump_without_totals_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.2.out.1").write_text("events: Ir\nsummary: 34\n")
    assert instructions.read_dump(tmp_path / "a.2.out.1") == (34, {})
    (tmp_path / "bad.out.1").write_text("events: Ir\nfn=x\n1 5\n")
    with pytest.raises(RuntimeError, match="no totals"):
        instructions.read_dump(tmp_path / "bad.out.1")


def test_read_dump_reads_the_callgrind_format(tmp_path: Path) -> None:
    dump = tmp_path / "a.1.out.1"
    dump.write_text(
        "positions: line\nevents: Ir\n"
        "ob=(1) /usr/lib/libpython3.11.so.1.0\nfl=(1) ceval.c\nfn=(1) eval\n10 500\n+2 100\n"
        "cob=(2) /lib/x86_64-linux-gnu/libc.so.6\ncfn=(2) memcpy\ncalls=3 0\n12 999\n"
        "ob=(2)\nfn=(2)\n0 60\n"  # libc's own cost; the 999 above is the call's inclusive cost
        "ob=(1)\nfn=(1)\n-1 40\ntotals: 700\n"
    )
    totals, by_object = instructions.read_dump(dump)
    assert by_object == {"libpython3.11.so.1.0": 640, "libc.so.6": 60}
    assert totals == sum(by_object.values()) == 700


def test_the_table_says_where_a_pairs_instructions_go() -> None:
    pair = instructions.Result(
        "litestar-granian", "pair", "litestar", "granian", "json", 100, 1, 30_000_000,
        {"libpython3.11.so.1.0": 25_000_000, "_granian.so": 5_000_000},
    )  # fmt: skip
    hello = instructions.Result(
        "hello_litestar-granian", "floor", "litestar", "granian", "json", 100, 1, 27_000_000,
        {"libpython3.11.so.1.0": 22_500_000, "_granian.so": 4_500_000},
    )  # fmt: skip
    text = instructions.markdown([pair, hello], {})
    assert "| litestar-granian | json | `libpython3.11.so.1.0` | 250.0k | 225.0k | +25.0k |" in text
    assert "| litestar-granian | json | `_granian.so` | 50.0k | 45.0k | +5.0k |" in text


def test_lab_instructions_counts_a_real_pair_and_its_floor(lab_env: None, tmp_path: Path) -> None:
    code = main(
        ["instructions", "--framework", "aiohttp", "--server", "aiohttp", "--scenario", "json",
         "--requests", "50", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    doc = json.loads((tmp_path / "instructions.json").read_text())
    assert doc["schema"] == "lab.instructions/1" and doc["packages"]["aiohttp"]
    counts = {r["target"]: r for r in doc["results"]}
    assert set(counts) == {"aiohttp-aiohttp", "hello_aiohttp-aiohttp"}
    for row in counts.values():
        assert row["requests"] == 50 and row["processes"] >= 1
        # a Python HTTP request is tens of thousands of instructions at the very least
        assert 20_000 < row["per_request"] < 50_000_000
        # every instruction is some binary's own, the interpreter's most of all
        assert sum(row["by_object"].values()) == row["instructions"]
        assert "python" in max(row["by_object"], key=row["by_object"].get)
    # the lab's stack does more than a hello world, never less
    assert counts["aiohttp-aiohttp"]["per_request"] > counts["hello_aiohttp-aiohttp"]["per_request"]
    assert "| aiohttp-aiohttp | json |" in (tmp_path / "instructions.md").read_text()


def test_lab_instructions_rejects_an_unknown_framework(tmp_path: Path) -> None:
    assert main(["instructions", "--framework", "nope", "--out", str(tmp_path)]) == 2
    assert main(["instructions", "--scenario", "nope", "--out", str(tmp_path)]) == 2

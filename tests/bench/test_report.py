"""``lab report`` and ``lab compare`` on small synthetic runs written in the documented
schema (docs/results-schema.md): tables, plots, the HTML page, the picker, the comparison."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import stats
from bench.reporting import compare, load, picker, write_report
from bench.results import RunDir, stamp, write_json
from lab.cli import main

KINDS = {"uvicorn": "asgi", "granian": "asgi", "gunicorn": "wsgi"}


def cell(
    target: str,
    scenario: str,
    conc: int,
    repeat: int,
    rps: float,
    *,
    outcome: str = "ok",
    role: str = "pair",
    p99_ms: float = 20.0,
    rss_mib: float = 50.0,
    cpu_s_per_1k: float = 0.2,
    bytes_per_response: float = 150.0,
    flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    app, server = target.rsplit("-", 1)
    kind = KINDS[server] if app != "flask" else "wsgi"
    floors = {"server": f"raw_{kind}-{server}", "framework": f"hello_{app}-{server}"}
    return stamp(
        "cell",
        {
            "run_id": "synthetic",
            "cell_id": f"{target}__{scenario}__c{conc}__r{repeat}",
            "mode": "full",
            "target": {
                "id": target,
                "role": role,
                "app_name": app,
                "framework": None if role == "floor" else app,
                "server": server,
                "kind": kind,
                "floors": {} if role == "floor" else floors,
            },
            "scenario": {"id": scenario},
            "concurrency": conc,
            "repeat": repeat,
            "round": repeat,
            "outcome": outcome,
            "reasons": [] if outcome == "ok" else ["3 response(s) with unexpected status 500"],
            "flags": list(flags),
            "load": {
                "rps": rps,
                "requests": int(rps * 10),
                "bytes_per_response": bytes_per_response,
                "latency_us": {
                    "p50": p99_ms * 250,
                    "p90": p99_ms * 500,
                    "p99": p99_ms * 1000,
                    "p99_9": p99_ms * 1500,
                    "max": p99_ms * 2000,
                },
            },
            "server": {"cpu_s_per_1k": cpu_s_per_1k, "peak_rss_bytes": int(rss_mib * 2**20)},
            "client": {"saturated": False},
        },
    )


def manifest(mode: str = "full", repeats: int = 3) -> dict[str, Any]:
    return stamp(
        "manifest",
        {
            "run_id": "synthetic",
            "created_at": "2026-01-01T00:00:00Z",
            "command": ["lab", "bench"],
            "git": {"commit": "0123456789abcdef", "branch": "main", "dirty": False},
            "machine": {"cpu_model": "Test CPU", "cpus_logical": 2, "kernel": "6.1"},
            "python": {"version": "3.11.7"},
            "wrk": {"version": "wrk 4.1.0"},
            "pinning": {"enabled": True, "server_cpus": [0], "client_cpus": [1]},
            "method": {
                "mode": mode,
                "duration_s": 10,
                "warmup_s": 2,
                "repeats": repeats,
                "workers": 1,
                "noisy_threshold": 0.10,
                "concurrency": [8, 64],
            },
        },
    )


def standard_cells() -> list[dict[str, Any]]:
    """json at 8 and 64 (a sweep), db, stream-items and two codecs; one pair noisy on json
    @ 64, one failed there; floors for the ratios."""
    cells = []
    for r, (a, b) in enumerate([(1000, 2000), (1100, 2600), (1050, 2100)], start=1):
        cells += [
            cell("fastapi-uvicorn", "json", 64, r, a, p99_ms=30),
            cell("litestar-granian", "json", 64, r, b, p99_ms=40, rss_mib=80),
            cell("flask-gunicorn", "json", 64, r, 700, outcome="failed" if r == 2 else "ok"),
            cell("raw_asgi-uvicorn", "json", 64, r, 4000, role="floor"),
            cell("hello_fastapi-uvicorn", "json", 64, r, 2100, role="floor"),
            cell("fastapi-uvicorn", "json", 8, r, 900),
            cell("litestar-granian", "json", 8, r, 1500),
            cell("fastapi-uvicorn", "db", 64, r, 500, p99_ms=90),
            cell("litestar-granian", "db", 64, r, 450, p99_ms=60),
            cell("flask-gunicorn", "db", 64, r, 300, p99_ms=100),
            cell("fastapi-uvicorn", "stream-items", 4, r, 25, rss_mib=90),
            cell("flask-gunicorn", "stream-items", 4, r, 20, rss_mib=60),
            cell("fastapi-uvicorn", "report-gzip", 16, r, 300, bytes_per_response=30000),
            cell("fastapi-uvicorn", "report-br", 16, r, 250, bytes_per_response=25000),
        ]
    return cells


def make_run(
    path: Path,
    cells: list[dict[str, Any]] | None = None,
    *,
    mode: str = "full",
    repeats: int = 3,
    with_summary: bool = True,
) -> Path:
    """A run folder in the documented layout; the summary is built by the harness's own
    ``stats.summarise`` so the rows are exactly what ``lab bench`` would write."""
    run = RunDir(path)
    run.create()
    write_json(run.manifest, manifest(mode, repeats))
    cells = standard_cells() if cells is None else cells
    for c in cells:
        run.write_cell(c["cell_id"], {k: v for k, v in c.items() if not k.startswith("schema")})
    if with_summary:
        rows = stats.summarise(cells, noisy_threshold=0.10, planned_repeats=repeats)
        write_json(
            run.summary,
            stamp("summary", {"run_id": "synthetic", "noisy_threshold": 0.10, "rows": rows}),
        )
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def _table(readme: str, title: str) -> list[list[str]]:
    block = readme.split(f"## {title}\n", 1)[1].strip().split("\n\n", 1)[0]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in block.splitlines()[2:]]


# --- tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("with_summary", [True, False], ids=["summary", "cells-only"])
def test_tables_rank_flag_and_read_floors(tmp_path: Path, with_summary: bool) -> None:
    path = make_run(tmp_path / "run", with_summary=with_summary)
    write_report(load(path), with_plots=False)
    readme = (path / "README.md").read_text()
    assert "wrk to each server directly" in readme  # the topology, in the run's first line
    rows = _table(readme, "json @ 64 connections")
    assert [r[1] for r in rows] == [
        "litestar-granian",
        "fastapi-uvicorn",
        "flask-gunicorn",
        "raw_asgi-uvicorn (floor)",
        "hello_fastapi-uvicorn (floor)",
    ]
    lit, fast, flask, raw, _ = rows
    assert (lit[0], lit[2], lit[3]) == ("1", "2,100", "28.6%")
    assert lit[-1] == "noisy"
    assert (fast[0], fast[2], fast[-1]) == ("2", "1,050", "ok")
    assert fast[8] == "0.26" and fast[9] == "0.50"  # 1050/4000, 1050/2100
    assert fast[10] == "0.50 (0.48-0.52)"  # 1000, 1100, 1050 over 2100 round by round
    assert raw[10] == "-"  # a floor has no floor of its own
    assert fast[5] == "30.00" and fast[6] == "200.0" and fast[7] == "50"  # p99, CPU-ms, MiB
    assert flask[0] == "" and flask[-1].startswith("FAILED: 3 response(s) with unexpected")
    assert raw[0] == "1"
    assert "## stream-items @ 4 connections" in readme
    assert "Plots: not drawn" in readme


def test_quick_mode_is_announced(tmp_path: Path) -> None:
    cells = [cell("fastapi-uvicorn", "json", 64, 1, 1000)]
    path = make_run(tmp_path / "q", cells, mode="quick", repeats=1)
    write_report(load(path), with_plots=False)
    assert "Quick mode" in (path / "README.md").read_text()
    assert "quick-mode run" in (path / "picker.md").read_text()


# --- plots and HTML --------------------------------------------------------------------


def test_plots_png_and_svg(run_dir: Path) -> None:
    written = write_report(load(run_dir))
    names = {p.name for p in written}
    for stem in (
        "rps-json-c64",
        "latency-json-c64",
        "sweep-json",
        "rps-db-c64",
        "memory-streaming",
        "codecs",
    ):
        assert f"{stem}.png" in names and f"{stem}.svg" in names
        assert (run_dir / "plots" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (run_dir / "plots" / f"{stem}.svg").read_text()
    assert (
        "![plots/rps-json-c64.png](plots/rps-json-c64.png)" in (run_dir / "README.md").read_text()
    )


def test_missing_plots_are_said(tmp_path: Path) -> None:
    path = make_run(
        tmp_path / "r", [cell("fastapi-uvicorn", "json", 64, r, 1000) for r in (1, 2, 3)]
    )
    write_report(load(path))
    readme = (path / "README.md").read_text()
    assert "Concurrency sweep: not in this run" in readme
    assert "Server memory while streaming: not in this run" in readme
    assert "Bytes vs throughput per codec: not in this run" in readme
    assert "not in this run" in (path / "report.html").read_text()


def test_html_is_self_contained(run_dir: Path) -> None:
    write_report(load(run_dir))
    page = (run_dir / "report.html").read_text()
    assert page.count("<svg") >= 6
    assert re.search(r"<script[^>]*\bsrc=", page) is None
    assert "<link" not in page and "@import" not in page
    assert re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) is None
    assert re.search(r"url\(\s*['\"]?(https?:)?//", page) is None
    assert 'id="rows"' in page and 'id="filter"' in page
    for target in ("litestar-granian", "fastapi-uvicorn", "flask-gunicorn"):
        assert target in page
    assert "Test CPU" in page and "noisy_threshold" in page  # manifest and method
    assert "Which framework should I pick?" in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # the inlined SVGs' ids do not collide
    for ref in re.findall(r"url\(#([^)]+)\)", page):
        assert ref in ids


# --- picker ----------------------------------------------------------------------------


def test_picker_cites_the_numbers(run_dir: Path) -> None:
    text = picker.markdown(load(run_dir))
    small = text.split("## Many small JSON responses", 1)[1].split("\n## ", 1)[0]
    assert "**Pick: litestar-granian**" in small
    assert "json @ 64: 2,100 req/s (spread 28.6%), p99 40.00 ms" in small
    assert "[noisy]" in small and "Caution" in small
    assert "flask-gunicorn (json: failed)" in small  # not comparable, and says why
    db = text.split("## I/O-bound with a database", 1)[1].split("\n## ", 1)[0]
    assert "**Pick: fastapi-uvicorn**" in db
    assert "litestar-granian has the lower p99 (60.00 ms against 90.00 ms)" in db
    cpu = text.split("## CPU-bound", 1)[1].split("\n## ", 1)[0]
    assert "Not in this run" in cpu
    sync = text.split("## Sync codebase (WSGI)", 1)[1]
    assert "litestar" not in sync.split("against the fastest pair")[0]


def test_picker_invents_nothing(run_dir: Path) -> None:
    """Every req/s figure the picker prints is a median of the run's rows."""
    run = load(run_dir)
    medians = {f"{r['rps']['median']:,.0f}" for r in run.rows if r["rps"]["median"]}
    printed = set(re.findall(r"([\d,]+) req/s", picker.markdown(run)))
    assert printed and printed <= medians


# --- compare ---------------------------------------------------------------------------


def test_threshold_parsing() -> None:
    assert compare.parse_threshold("rps:-5%") == compare.Threshold("rps", -0.05)
    assert compare.parse_threshold("p99:+10%") == compare.Threshold("p99", 0.10)
    assert compare.parse_threshold("p99.9:+1.5%").metric == "p99_9"
    for bad in ("rps:5", "rps-5%", "speed:-5%", "rps:5%"):
        with pytest.raises(ValueError, match=r"threshold|metric"):
            compare.parse_threshold(bad)
    assert compare.Threshold("rps", -0.05).crossed(-0.06)
    assert not compare.Threshold("rps", -0.05).crossed(-0.04)
    assert not compare.Threshold("rps", -0.05).crossed(0.50)
    assert compare.Threshold("p99", 0.10).crossed(0.11)
    assert not compare.Threshold("p99", 0.10).crossed(-0.5)


def _scaled(factor_rps: float, factor_p99: float = 1.0) -> list[dict[str, Any]]:
    out = []
    for c in standard_cells():
        if c["target"]["id"] == "fastapi-uvicorn" and c["scenario"]["id"] == "db":
            c["load"]["rps"] *= factor_rps
            c["load"]["latency_us"] = {
                k: v * factor_p99 for k, v in c["load"]["latency_us"].items()
            }
        out.append(c)
    return out


@pytest.mark.parametrize(
    ("rps", "p99", "thresholds", "status"),
    [
        (1.0, 1.0, ["rps:-5%", "p99:+10%"], 0),
        (0.97, 1.0, ["rps:-5%"], 0),  # a 3 % fall is within a 5 % threshold
        (0.90, 1.0, ["rps:-5%"], 1),
        (1.20, 1.0, ["rps:-5%"], 0),  # faster is never a regression
        (1.0, 1.2, ["rps:-5%", "p99:+10%"], 1),
        (1.0, 1.2, ["rps:-5%"], 0),
        (0.5, 2.0, [], 0),  # no threshold: a report only
    ],
)
def test_compare_exit_status(
    tmp_path: Path, rps: float, p99: float, thresholds: list[str], status: int, capsys: Any
) -> None:
    old = make_run(tmp_path / "old")
    new = make_run(tmp_path / "new", _scaled(rps, p99))
    argv = ["compare", str(old), str(new)]
    for t in thresholds:
        argv += ["--threshold", t]
    assert main(argv) == status
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| fastapi-uvicorn | db | 64 |"))
    assert f"{rps:.3f}" in line
    assert ("REGRESSION" in line) == bool(status)


def test_compare_lists_unmatched_rows_and_failures(tmp_path: Path, capsys: Any) -> None:
    old_cells = standard_cells()
    new_cells = [c for c in standard_cells() if c["scenario"]["id"] != "stream-items"]
    new_cells.append(cell("aiohttp-gunicorn", "json", 64, 1, 900))
    for c in new_cells:
        if c["target"]["id"] == "litestar-granian" and c["scenario"]["id"] == "db":
            c["outcome"] = "failed"
            c["reasons"] = ["1 socket error(s): timeout"]
    old, new = make_run(tmp_path / "old", old_cells), make_run(tmp_path / "new", new_cells)
    out_file = tmp_path / "cmp.md"
    assert main(["compare", str(old), str(new), "--out", str(out_file)]) == 0
    assert main(["compare", str(old), str(new), "--threshold", "rps:-50%"]) == 1
    out = capsys.readouterr().out
    assert "Only in OLD (not compared): fastapi-uvicorn__stream-items__c4" in out
    assert "Only in NEW (not compared): aiohttp-gunicorn__json__c64" in out
    assert "ok in OLD, failed in NEW" in out
    # flask-gunicorn json@64 failed in both: listed, not compared, not a regression
    line = next(x for x in out.splitlines() if x.startswith("| flask-gunicorn | json | 64 |"))
    assert "not compared" in line and "REGRESSION" not in line
    assert out_file.read_text().startswith("# Comparison")


def test_compare_usage_errors(tmp_path: Path, run_dir: Path) -> None:
    assert main(["compare", str(run_dir), str(tmp_path / "nothing")]) == 2
    assert main(["compare", str(run_dir), str(run_dir), "--threshold", "rps:5"]) == 2


# --- the command -----------------------------------------------------------------------


def test_lab_report_writes_everything(run_dir: Path) -> None:
    assert main(["report", str(run_dir)]) == 0
    for name in ("README.md", "picker.md", "report.html", "plots/rps-json-c64.svg"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["schema"] == "lab-bench/summary"  # the report never rewrites results


def test_lab_report_on_an_empty_folder(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path)]) == 2


def test_a_scenario_with_no_ok_row_still_reports(tmp_path: Path) -> None:
    broken = cell("fastapi-uvicorn", "fortunes", 64, 1, 0)
    broken.update(outcome="error", reasons=["server did not start"], load=None, server=None)
    cells = [
        broken,
        cell("flask-gunicorn", "fortunes", 64, 1, 100, outcome="failed"),
        cell("fastapi-uvicorn", "json", 64, 1, 1000),
    ]
    path = make_run(tmp_path / "r", cells, repeats=1)
    write_report(load(path))
    rows = _table((path / "README.md").read_text(), "fortunes @ 64 connections")
    assert [(r[1], r[0], r[-1].split(":")[0]) for r in rows] == [
        ("fastapi-uvicorn", "", "ERROR"),
        ("flask-gunicorn", "", "FAILED"),
    ]
    assert (path / "plots" / "rps-fortunes-c64.svg").is_file()
    assert not (path / "plots" / "latency-fortunes-c64.svg").exists()
    page = (path / "report.html").read_text()
    assert "server did not start" in page


def test_compare_warns_when_the_runs_measured_differently(tmp_path: Path, capsys: Any) -> None:
    old, new = make_run(tmp_path / "old"), make_run(tmp_path / "new")
    data = json.loads((new / "manifest.json").read_text())
    data["method"]["instances"] = 2  # through nginx; OLD predates the field: direct
    data["services"] = {"postgresql": "18.6", "redis": "7.0.15"}
    data["idle"] = {"requested": True, "held": True}  # OLD has no record: idle CPUs halted
    write_json(new / "manifest.json", data)
    assert main(["compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "> warning: method.instances differs: 0 in OLD, 2 in NEW" in out
    assert "> warning: services.postgresql differs" in out
    assert "> warning: idle.held differs: False in OLD, True in NEW" in out
    assert "method.duration_s" not in out  # what is the same is not reported


def test_a_full_run_lists_the_matrix_scenarios_it_has_not_measured(tmp_path: Path) -> None:
    from lab.scenarios import scenarios

    full = make_run(tmp_path / "full")
    measured = {c["scenario"]["id"] for c in standard_cells()}
    planned = [s.id for s in scenarios() if s.in_matrix]
    missing = [s for s in planned if s not in measured]
    assert missing  # the synthetic run measures a few scenarios only
    write_report(load(full), with_plots=False)
    readme = (full / "README.md").read_text()
    assert f"**Not yet measured in this run** ({len(missing)} of" in readme
    assert ", ".join(missing) in readme
    quick = make_run(tmp_path / "quick", mode="quick", repeats=1)
    write_report(load(quick), with_plots=False)
    assert "Not yet measured" not in (quick / "README.md").read_text()


# --- fixed-rate rows ---------------------------------------------------------------------


def rate_cell(target: str, repeat: int, cpu_us: float, *, role: str = "pair") -> dict[str, Any]:
    """A fixed-rate cell of ``json`` at 1,000 requests/s that cost ``cpu_us`` a request."""
    record = cell(target, "json", 64, repeat, 1000.0, role=role)
    record["cell_id"] = f"{target}__json__c64__q1000__r{repeat}"
    record.update(
        offered="1000",
        rate=1000.0,
        cost=stats.fixed_rate_cost(
            10_000, server_cpu_s=cpu_us / 100, services_cpu_s={}, unmeasured=[]
        ),
    )
    return record


def rate_run(path: Path, pair_cpu: list[float], raw_cpu: list[float], host: str) -> Path:
    cells = [rate_cell("fastapi-uvicorn", r, c) for r, c in enumerate(pair_cpu, 1)]
    cells += [rate_cell("raw_asgi-uvicorn", r, c, role="floor") for r, c in enumerate(raw_cpu, 1)]
    make_run(path, cells)
    data = json.loads((path / "manifest.json").read_text())
    data["machine"].update(hostname=host, boot_id="b-" + host)
    (path / "manifest.json").write_text(json.dumps(data))
    return path


def test_fixed_rate_rows_get_their_own_tables(tmp_path: Path) -> None:
    path = rate_run(tmp_path / "r", [200.0, 210.0, 205.0], [100.0, 100.0, 100.0], "a")
    write_report(load(path), with_plots=False)
    readme = (path / "README.md").read_text()
    rows = _table(readme.replace("### ", "## "), "json at 1,000 req/s (64 connections)")
    assert [r[1] for r in rows] == ["fastapi-uvicorn", "raw_asgi-uvicorn (floor)"]
    assert rows[0][3] == "205.0" and rows[0][5] == "2.05"  # µs a request; over the raw floor
    assert "## json @ 64 connections" not in readme  # no closed-loop board to show


def test_the_report_says_how_steady_the_run_was(tmp_path: Path) -> None:
    # 200, 220, 210 µs a request: a spread of 20 / 210, 10 %, outside the 5 % target
    path = rate_run(tmp_path / "r", [200.0, 220.0, 210.0], [100.0, 100.0, 100.0], "a")
    write_report(load(path), with_plots=False)
    readme = (path / "README.md").read_text()
    [line] = [x for x in readme.splitlines() if x.startswith("- `json` at 1,000 req/s")]
    assert "spread over the rounds median 10%" in line and "(0 of 1 pairs within 5 %)" in line
    assert "rate held by 1 of 1 pairs" in line


def test_compare_judges_fixed_rate_rows_by_their_intervals(tmp_path: Path) -> None:
    old = rate_run(tmp_path / "old", [200.0, 210.0, 205.0], [100.0, 101.0, 99.0], "a")
    same = rate_run(tmp_path / "same", [203.0, 208.0, 206.0], [100.0, 100.0, 101.0], "a")
    # another VM: twice the microseconds for both, the same ratio to the floor
    other = rate_run(tmp_path / "other", [410.0, 400.0, 420.0], [200.0, 201.0, 199.0], "b")
    dearer = rate_run(tmp_path / "dearer", [300.0, 305.0, 310.0], [100.0, 100.0, 100.0], "a")
    text = compare.markdown(load(old), load(same), compare.compare(load(old), load(same), []), [])
    assert "Same machine and boot" in text
    [line] = [x for x in text.splitlines() if x.startswith("| fastapi-uvicorn | json | 1000")]
    assert line.count("inside the intervals") == 2  # the ratio and the microseconds
    runs = (load(old), load(other))
    text = compare.markdown(*runs, compare.compare(*runs, []), [])
    assert "Different machines" in text and "server CPU µs/req" not in text
    [line] = [x for x in text.splitlines() if x.startswith("| fastapi-uvicorn | json | 1000")]
    assert "inside the intervals" in line
    runs = (load(old), load(dearer))
    text = compare.markdown(*runs, compare.compare(*runs, []), [])
    [line] = [x for x in text.splitlines() if x.startswith("| fastapi-uvicorn | json | 1000")]
    assert "above OLD's interval" in line

"""Statistics over repeats, the failed and noisy rules, ranking and floor ratios."""

from __future__ import annotations

from typing import Any

import pytest

from bench import stats


def test_median_and_spread() -> None:
    assert stats.median([]) is None
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([1.0, 2.0, 3.0, 10.0]) == 2.5
    assert stats.spread([100.0]) is None
    assert stats.spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert stats.spread([0.0, 0.0]) is None


def _cell(
    target: str,
    rps: float,
    *,
    repeat: int = 1,
    outcome: str = "ok",
    scenario: str = "json",
    role: str = "pair",
    floors: dict[str, str] | None = None,
    saturated: bool = False,
) -> dict[str, Any]:
    return {
        "cell_id": f"{target}__{scenario}__c64__r{repeat}",
        "target": {
            "id": target,
            "role": role,
            "framework": "fw",
            "server": "srv",
            "kind": "asgi",
            "floors": floors or {},
        },
        "scenario": {"id": scenario},
        "concurrency": 64,
        "repeat": repeat,
        "outcome": outcome,
        "reasons": [] if outcome == "ok" else ["1 response(s) with unexpected status 500"],
        "load": {
            "rps": rps,
            "bytes_per_response": 150.0,
            "latency_us": {
                "p50": 1000.0 * repeat,
                "p90": 2000.0,
                "p99": 3000.0,
                "p99_9": 4000.0,
                "max": 5000.0,
            },
        },
        "server": {
            "cpu_s_per_1k": 0.1 * repeat,
            "cpu_s": 2.0,
            "system_s": 0.2 * repeat,
            "switches_per_req": [0.5 * repeat, 0.01 * repeat],
            "peak_rss_bytes": 1000 * repeat,
        },
        "client": {"saturated": saturated},
    }


def test_row_medians_over_repeats() -> None:
    cells = [_cell("a-srv", r, repeat=i) for i, r in enumerate([1000.0, 1050.0, 1020.0], 1)]
    [row] = stats.summarise(cells, noisy_threshold=0.10, planned_repeats=3)
    assert row["rps"] == {
        "by_round": {"1": 1000.0, "2": 1050.0, "3": 1020.0},
        "median": 1020.0,
        "min": 1000.0,
        "max": 1050.0,
        "spread": pytest.approx(50 / 1020),
        "ci95": [pytest.approx(960.81, abs=0.01), pytest.approx(1085.85, abs=0.01)],
    }
    assert row["noisy"] is False
    assert row["latency_us"]["p50"] == 2000.0
    assert row["cpu_s_per_1k"] == pytest.approx(0.2)
    assert row["cpu_system_share"] == pytest.approx(0.2)  # 0.1, 0.2, 0.3 of 2 s
    assert row["voluntary_switches_per_req"] == pytest.approx(1.0)
    assert row["involuntary_switches_per_req"] == pytest.approx(0.02)
    assert row["peak_rss_bytes"] == 3000  # the peak over repeats, not a median
    assert row["outcome"] == "ok"
    assert row["rank"] == 1


def test_noisy_when_spread_exceeds_threshold() -> None:
    cells = [_cell("a-srv", r, repeat=i) for i, r in enumerate([1000.0, 1200.0, 1100.0], 1)]
    [row] = stats.summarise(cells, noisy_threshold=0.10)
    assert row["rps"]["spread"] == pytest.approx(200 / 1100)
    assert row["noisy"] is True
    assert row["rank"] == 1  # noisy rows are ranked, but flagged


def test_single_repeat_is_not_assessed() -> None:
    [row] = stats.summarise([_cell("a-srv", 1000.0)], noisy_threshold=0.10)
    assert row["rps"]["spread"] is None
    assert row["noisy"] is False


def test_failed_and_errored_rows_are_never_ranked() -> None:
    cells = [
        _cell("fast-srv", 9000.0, outcome="failed"),
        _cell("mid-srv", 5000.0),
        _cell("slow-srv", 1000.0),
        {**_cell("broken-srv", 0.0, outcome="error"), "load": None, "server": None, "client": None},
        _cell("floor-srv", 20000.0, role="floor"),
    ]
    rows = {r["target"]: r for r in stats.summarise(cells, noisy_threshold=0.1)}
    assert rows["fast-srv"]["rank"] is None
    assert rows["fast-srv"]["outcome"] == "failed"
    assert rows["fast-srv"]["rps"]["median"] is None  # failed repeats give no figure
    assert rows["broken-srv"]["outcome"] == "error"
    assert rows["broken-srv"]["rank"] is None
    assert (rows["mid-srv"]["rank"], rows["slow-srv"]["rank"]) == (1, 2)
    assert rows["floor-srv"]["rank"] == 1  # floors are ranked among floors only


def test_one_failed_repeat_fails_the_row() -> None:
    cells = [_cell("a-srv", 1000.0, repeat=1), _cell("a-srv", 1000.0, repeat=2, outcome="failed")]
    [row] = stats.summarise(cells, noisy_threshold=0.1)
    assert row["outcome"] == "failed"
    assert row["rank"] is None
    assert row["repeats_ok"] == 1


def test_missing_repeats_make_a_row_incomplete() -> None:
    [row] = stats.summarise([_cell("a-srv", 1000.0)], noisy_threshold=0.1, planned_repeats=3)
    assert row["outcome"] == "incomplete"
    assert row["rank"] is None


def test_floor_ratios() -> None:
    floors = {"server": "raw-srv", "framework": "hello-srv"}
    cells = [
        _cell("fw-srv", 2500.0, floors=floors),
        _cell("hello-srv", 5000.0, role="floor", floors={"server": "raw-srv"}),
        _cell("raw-srv", 10000.0, role="floor"),
    ]
    rows = {r["target"]: r for r in stats.summarise(cells, noisy_threshold=0.1)}

    def one_round(ratio: float) -> dict[str, Any]:
        return {"median": ratio, "min": ratio, "max": ratio, "rounds": 1, "ci95": None}

    assert rows["fw-srv"]["floors"] == {
        "server": {
            "target": "raw-srv",
            "scenario": "json",
            "rps_ratio": 0.25,
            "per_round": one_round(0.25),
        },
        "framework": {
            "target": "hello-srv",
            "scenario": "json",
            "rps_ratio": 0.5,
            "per_round": one_round(0.5),
        },
    }
    assert rows["hello-srv"]["floors"]["server"] == {
        "target": "raw-srv",
        "scenario": "json",
        "rps_ratio": 0.5,
        "per_round": one_round(0.5),
    }
    assert rows["raw-srv"]["floors"] == {"server": None, "framework": None}


def test_per_round_ratio_pairs_each_round_with_its_floor() -> None:
    """The machine slowed down in round 3 while the floor ran (1900 where it did 2000) and
    the pair ran slow all of round 3: the ratio of the medians (950 / 1900) reads 0.5, the
    rounds say 0.9, 0.9, 0.5. Both are published; only the per-round one pairs neighbours."""
    pair = [900.0, 1800.0, 950.0]
    floor = [1000.0, 2000.0, 1900.0]
    cells = [
        *(
            _cell("fw-srv", v, repeat=i, floors={"framework": "hello-srv"})
            for i, v in enumerate(pair, 1)
        ),
        *(_cell("hello-srv", v, repeat=i, role="floor") for i, v in enumerate(floor, 1)),
    ]
    rows = {r["target"]: r for r in stats.summarise(cells, noisy_threshold=1.0)}
    ref = rows["fw-srv"]["floors"]["framework"]
    assert ref["rps_ratio"] == 0.5
    assert ref["per_round"] == {
        "median": 0.9,
        "min": 0.5,
        "max": 0.9,
        "rounds": 3,
        # t interval over the three paired ratios (0.9, 0.9, 0.5): one slow round widens it
        "ci95": [pytest.approx(0.1929, abs=1e-4), pytest.approx(1.3404, abs=1e-4)],
    }
    assert rows["fw-srv"]["rps"]["by_round"] == {"1": 900.0, "2": 1800.0, "3": 950.0}


def test_per_round_ratio_uses_only_rounds_both_have() -> None:
    row = {"rps": {"by_round": {"1": 90.0, "2": 80.0}}}
    assert stats.per_round_ratio(row, {"rps": {"by_round": {"2": 100.0, "3": 50.0}}}) == {
        "median": 0.8,
        "min": 0.8,
        "max": 0.8,
        "rounds": 1,
        "ci95": None,
    }
    assert stats.per_round_ratio(row, {"rps": {"by_round": {"3": 50.0}}}) is None
    assert stats.per_round_ratio({"rps": {}}, {"rps": {}}) is None  # a run from before rounds


def test_floor_ratio_absent_when_the_floor_failed() -> None:
    cells = [
        _cell("fw-srv", 2500.0, floors={"server": "raw-srv"}),
        _cell("raw-srv", 10000.0, role="floor", outcome="failed"),
    ]
    rows = {r["target"]: r for r in stats.summarise(cells, noisy_threshold=0.1)}
    assert rows["fw-srv"]["floors"]["server"] == {
        "target": "raw-srv",
        "scenario": None,
        "rps_ratio": None,
        "per_round": None,
    }


def test_client_saturation_is_carried() -> None:
    [row] = stats.summarise([_cell("a-srv", 1000.0, saturated=True)], noisy_threshold=0.1)
    assert row["client_saturated"] is True


NO_ERRORS = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
GOOD_LOAD: dict[str, Any] = {
    "requests": 100,
    "statuses": {"200": 100},
    "mismatches": 0,
    "response_hook": True,
    "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0},
}
OK_CHECKS: dict[str, Any] = {
    "before": {"ok": True, "problems": []},
    "after": {"ok": True, "problems": []},
}


def test_a_clean_cell_does_not_fail() -> None:
    assert stats.cell_failures(GOOD_LOAD, [200], OK_CHECKS) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"statuses": {"200": 90, "500": 10}}, "10 response(s) with unexpected status 500"),
        ({"statuses": {"200": 99, "429": 1}}, "unexpected status 429"),
        ({"errors": {**NO_ERRORS, "read": 4}}, "4 socket error(s): read"),
        ({"errors": {**NO_ERRORS, "connect": 2}}, "socket error(s): connect"),
        ({"errors": {**NO_ERRORS, "write": 1}}, "socket error(s): write"),
        ({"errors": {**NO_ERRORS, "timeout": 1}}, "socket error(s): timeout"),
        ({"mismatches": 3}, "3 response(s) failed the in-load check"),
        ({"requests": 0, "statuses": {}}, "no request completed"),
        ({"statuses": {}}, "no status was counted"),
    ],
)
def test_failed_cell(change: dict[str, Any], reason: str) -> None:
    reasons = stats.cell_failures({**GOOD_LOAD, **change}, [200], OK_CHECKS)
    assert any(reason in r for r in reasons), reasons


def test_expected_statuses_are_per_scenario() -> None:
    assert stats.cell_failures({**GOOD_LOAD, "statuses": {"201": 100}}, [201], OK_CHECKS) == []
    assert stats.cell_failures({**GOOD_LOAD, "statuses": {"200": 100}}, [201], OK_CHECKS)


def test_a_failed_check_fails_the_cell() -> None:
    checks = {
        **OK_CHECKS,
        "after": {"ok": False, "problems": ["header x-cache: 'MISS', expected 'HIT'"]},
    }
    [reason] = stats.cell_failures(GOOD_LOAD, [200], checks)
    assert reason.startswith("check after: header x-cache")


def test_latency_coverage_by_littles_law() -> None:
    # 64 connections always busy at 1000 req/s: each request must take 64 ms on average.
    assert stats.latency_coverage(1000.0, 64_000.0, 64) == pytest.approx(1.0)
    # 256 connections on a server doing 36 req/s: requests wait ~7 s, but a 2 s run only
    # sees the ones that finished (mean 1 s): the percentiles are censored.
    coverage = stats.latency_coverage(36.0, 1_000_000.0, 256)
    assert coverage is not None and coverage < stats.CENSORED_BELOW
    assert stats.latency_coverage(0.0, 1.0, 8) is None


def test_censored_latency_is_carried_to_the_row() -> None:
    cell = {**_cell("a-srv", 36.0), "flags": ["latency-censored"]}
    [row] = stats.summarise([cell], noisy_threshold=0.1)
    assert row["latency_censored"] is True
    assert row["outcome"] == "ok"  # a warning, not a failure


def test_cells_written_before_the_kernels_share_have_none() -> None:
    cells = [_cell("a-srv", 1000.0, repeat=i) for i in (1, 2, 3)]
    for cell in cells:
        del cell["server"]["system_s"]
        del cell["server"]["switches_per_req"]
    [row] = stats.summarise(cells, noisy_threshold=0.10, planned_repeats=3)
    assert row["cpu_system_share"] is None
    assert row["voluntary_switches_per_req"] is None


def test_an_overload_scenario_counts_misses_instead_of_failing() -> None:
    """503s and 504s allowed by ``expect`` and responses that missed the Lua check are an
    overload scenario's answers; a status outside ``expect`` still fails it."""
    shed = {**GOOD_LOAD, "statuses": {"200": 60, "503": 30, "504": 10}, "mismatches": 45}
    assert stats.cell_failures(shed, [200, 503, 504], OK_CHECKS, overload=True) == []
    assert "45 response(s) failed the in-load check" in stats.cell_failures(
        shed, [200, 503, 504], OK_CHECKS
    )
    broken = {**shed, "statuses": {"200": 60, "500": 40}}
    assert stats.cell_failures(broken, [200, 503, 504], OK_CHECKS, overload=True) == [
        "40 response(s) with unexpected status 500"
    ]


def test_good_rps_leaves_out_the_misses() -> None:
    assert stats.good_rps({"rps": 400.0, "responses": 1000, "mismatches": 250}) == 300.0
    assert stats.good_rps({"rps": 400.0, "responses": 1000, "mismatches": 0}) == 400.0
    assert stats.good_rps({"rps": 400.0, "responses": 0, "mismatches": 0}) is None
    hookless = {"rps": 400.0, "responses": 10, "mismatches": 0, "response_hook": False}
    assert stats.good_rps(hookless) is None


def test_an_overload_row_is_ranked_by_its_good_answers() -> None:
    cells = []
    # "fast" answers more, but most of its answers are 504s: fewer good ones than "slow"
    for target, rps, missed in (("fast", 900.0, 600), ("slow", 500.0, 0)):
        for repeat in (1, 2):
            cell = _cell(target, rps + repeat, repeat=repeat, scenario="agg")
            cell["scenario"]["overload"] = True
            cell["load"].update(responses=1000, mismatches=missed)
            cells.append(cell)
    rows = {r["target"]: r for r in stats.summarise(cells, noisy_threshold=0.1)}
    assert rows["slow"]["rank"] == 1 and rows["fast"]["rank"] == 2
    assert rows["slow"]["good_rps"]["ci95"] is not None


def test_good_rps_is_an_overload_rows_figure_only() -> None:
    cells = []
    for repeat, (rps, missed) in enumerate([(500.0, 100), (600.0, 300), (550.0, 110)], start=1):
        cell = _cell("p", rps, repeat=repeat, scenario="agg")
        cell["scenario"]["overload"] = True
        cell["load"].update(responses=1000, mismatches=missed)
        cells.append(cell)
    [row] = stats.summarise(cells, noisy_threshold=0.1)
    good = row["good_rps"]
    assert (good["median"], good["min"], good["max"]) == (450.0, 420.0, 489.5)
    assert good["spread"] == pytest.approx((489.5 - 420.0) / 450.0)
    plain = [_cell("p", 500.0, repeat=r) for r in (1, 2)]
    assert stats.summarise(plain, noisy_threshold=0.1)[0]["good_rps"] is None


def _rate_cell(
    target: str,
    cpu_us: float,
    *,
    repeat: int = 1,
    rps: float = 1000.0,
    role: str = "pair",
    floors: dict[str, str] | None = None,
    scenario: str = "json",
) -> dict[str, Any]:
    cell = _cell(target, rps, repeat=repeat, role=role, floors=floors, scenario=scenario)
    held = stats.rate_held(rps, 1000.0)
    cell.update(
        rate=1000.0,
        flags=[] if held else ["rate-not-held"],
        cost=stats.fixed_rate_cost(
            int(rps * 10),
            server_cpu_s=cpu_us * rps * 10 / 1e6,
            services_cpu_s={"postgresql": 0.5},
            unmeasured=[],
        ),
    )
    return cell


def test_ci95_is_a_t_interval_of_the_mean() -> None:
    assert stats.ci95([5.0]) is None
    low, high = stats.ci95([10.0, 12.0, 14.0]) or [0.0, 0.0]
    # mean 12, sd 2, t(2 df) 4.303: 12 -+ 4.303 * 2 / sqrt(3)
    assert (low, high) == (pytest.approx(7.0312, abs=1e-3), pytest.approx(16.9688, abs=1e-3))


def test_the_rate_is_held_at_98_percent_of_offered() -> None:
    assert stats.rate_held(980.0, 1000.0)
    assert not stats.rate_held(979.0, 1000.0)


def test_fixed_rate_cost_is_cpu_microseconds_per_request() -> None:
    cost = stats.fixed_rate_cost(
        2000, server_cpu_s=0.5, services_cpu_s={"postgresql": 0.1, "redis": 0.02}, unmeasured=[]
    )
    assert cost["server_cpu_us_per_request"] == 250.0
    assert cost["services_cpu_us_per_request"] == 60.0
    assert cost["services_cpu_us_by_service"] == {"postgresql": 50.0, "redis": 10.0}


def test_fixed_rate_rows_rank_by_cost_and_never_rank_a_rate_not_held() -> None:
    cells = [
        _rate_cell("dear-srv", 300.0),
        _rate_cell("cheap-srv", 100.0),
        _rate_cell("short-srv", 50.0, rps=900.0),  # cheapest, but did not hold 1000/s
        _cell("dear-srv", 5000.0),  # a saturation row of the same scenario: its own board
    ]
    rows = {(r["target"], r["rate"]): r for r in stats.summarise(cells, noisy_threshold=0.1)}
    assert rows[("cheap-srv", 1000.0)]["rank"] == 1
    assert rows[("dear-srv", 1000.0)]["rank"] == 2
    assert rows[("short-srv", 1000.0)]["rank"] is None
    assert rows[("short-srv", 1000.0)]["rate_held"] is False
    assert rows[("dear-srv", None)]["rank"] == 1
    assert rows[("dear-srv", None)]["cost"] is None
    assert rows[("dear-srv", 1000.0)]["key"] == "dear-srv__json__c64__q1000"


def test_fixed_rate_cost_is_read_against_the_raw_floor_round_by_round() -> None:
    floors = {"server": "raw-srv"}
    cells = [
        _rate_cell("a-srv", 200.0, repeat=1, floors=floors),
        _rate_cell("a-srv", 330.0, repeat=2, floors=floors),
        _rate_cell("raw-srv", 100.0, repeat=1, role="floor"),
        _rate_cell("raw-srv", 150.0, repeat=2, role="floor"),
    ]
    rows = {r["target"]: r for r in stats.summarise(cells, noisy_threshold=0.1)}
    ratio = rows["a-srv"]["cost"]["server_cpu_ratio_to_raw"]
    assert ratio["rounds"] == 2
    assert ratio["min"] == 2.0 and ratio["max"] == 2.2
    assert ratio["ci95"] is not None
    assert rows["a-srv"]["floors"]["server"]["cpu_ratio"] == ratio


def test_a_scenario_the_raw_floor_cannot_serve_is_costed_against_its_json() -> None:
    floors = {"server": "raw-srv"}
    cells = [
        _rate_cell("a-srv", 400.0, floors=floors, scenario="db"),
        _rate_cell("raw-srv", 100.0, role="floor"),
        _cell("a-srv", 900.0, floors=floors, scenario="db"),  # saturation: same scenario only
        _cell("raw-srv", 9000.0, role="floor"),
    ]
    rows = {(r["target"], r["rate"]): r for r in stats.summarise(cells, noisy_threshold=0.1)}
    at_rate = rows[("a-srv", 1000.0)]
    assert at_rate["cost"]["server_cpu_ratio_to_raw"]["median"] == 4.0
    assert at_rate["floors"]["server"]["scenario"] == "json"
    assert rows[("a-srv", None)]["floors"]["server"]["rps_ratio"] is None


def test_instruction_counts_fold_into_the_fixed_rate_rows() -> None:
    cells = [_rate_cell("a-srv", 200.0), _cell("a-srv", 5000.0)]
    rows = stats.summarise(cells, noisy_threshold=0.1)
    stats.fold_instructions(rows, {("a-srv", "json"): 412_345.6})
    by_rate = {r["rate"]: r for r in rows}
    assert by_rate[1000.0]["cost"]["instructions_per_request"] == 412_346
    assert by_rate[None]["cost"] is None


def test_rows_whose_intervals_overlap_are_tied() -> None:
    cells = [
        *(_cell("a-srv", v, repeat=i) for i, v in enumerate([1000.0, 1100.0, 1050.0], 1)),
        *(_cell("b-srv", v, repeat=i) for i, v in enumerate([1040.0, 1090.0, 990.0], 1)),
        *(_cell("c-srv", v, repeat=i) for i, v in enumerate([2000.0, 2010.0, 1990.0], 1)),
    ]
    rows = {r["target"]: r for r in stats.summarise(cells, noisy_threshold=0.5)}
    assert rows["c-srv"]["rank"] == 1 and rows["c-srv"]["tied_with"] == []
    assert rows["a-srv"]["tied_with"] == ["b-srv"]
    assert rows["b-srv"]["tied_with"] == ["a-srv"]

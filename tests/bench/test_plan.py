"""The declared scenarios and floors, target selection and the order cells run in."""

from __future__ import annotations

import pytest

from bench.cli import choose_scenarios
from bench.method import method_for
from bench.plan import build_plan
from bench.targets import floors, select_targets
from lab import matrix
from lab.scenarios import parse_offered, scenario, scenarios

ROUTES = (
    "plaintext",
    "json",
    "db",
    "queries",
    "updates",
    "fortunes",
    "items",
    "cached",
    "limited",
    "stream",
    "report",
    "products",
    "aggregate",
    "cpu",
)


def test_scenarios_are_declared_with_their_routes() -> None:
    ids = [s.id for s in scenarios()]
    assert len(ids) == len(set(ids))
    assert len([s for s in scenarios() if s.in_matrix]) == 20
    for route in ROUTES:
        assert any(i.startswith(route) for i in ids), route
    for sc in scenarios():
        assert sc.expect, sc.id
        assert ("{id}" in sc.path) == (sc.ids is not None), sc.id
        assert "{id}" not in sc.sample_path()
    assert scenario("items-id").sample_path() == "/items/1"
    assert scenario("limited").config == "LAB_RATE_LIMIT=1000000000/60s"
    assert scenario("json").config == ""


def test_quick_scenarios() -> None:
    assert [s.id for s in scenarios() if s.quick] == [
        "plaintext",
        "json",
        "db",
        "fortunes",
        "items-id",
        "cached-items-hit",
        "stream-items",
        "report-gzip",
    ]


def test_every_pair_has_its_floors() -> None:
    targets = select_targets()
    ids = {t.id for t in targets}
    assert {p.id for p in matrix.pairs()} <= ids
    for server in ("uvicorn", "hypercorn", "granian", "gunicorn"):
        assert f"raw_asgi-{server}" in ids
    for server in ("gunicorn", "gunicorn-gthread", "granian"):
        assert f"raw_wsgi-{server}" in ids
        assert f"hello_flask-{server}" in ids
    assert {"hello_aiohttp-aiohttp", "hello_aiohttp-gunicorn"} <= ids
    assert "raw_asgi-aiohttp" not in ids


def test_filters_select_pairs_and_their_floors() -> None:
    ids = [t.id for t in select_targets(("fastapi",), ("uvicorn",))]
    assert ids == ["fastapi-uvicorn", "hello_fastapi-uvicorn", "raw_asgi-uvicorn"]
    assert [t.id for t in select_targets(("fastapi",), ("uvicorn",), with_floors=False)] == [
        "fastapi-uvicorn"
    ]
    assert [t.id for t in select_targets(("raw_wsgi",), ("granian",))] == ["raw_wsgi-granian"]


def test_each_pair_runs_next_to_its_floors() -> None:
    """Server by server; a pair, then its hello world, then the raw callable (once per
    server: the second pair on uvicorn finds it placed already)."""
    ids = [t.id for t in select_targets(("fastapi", "litestar"), ("uvicorn", "granian"))]
    assert ids == [
        "fastapi-uvicorn",
        "hello_fastapi-uvicorn",
        "raw_asgi-uvicorn",
        "litestar-uvicorn",
        "hello_litestar-uvicorn",
        "fastapi-granian",
        "hello_fastapi-granian",
        "raw_asgi-granian",
        "litestar-granian",
        "hello_litestar-granian",
    ]


def test_floor_command_override() -> None:
    [target] = select_targets(("hello_aiohttp",), ("aiohttp",))
    argv = target.pair.argv(host="127.0.0.1", port=9, workers=1)
    assert argv[1:4] == ["-m", "impls.floors.hello_aiohttp", "--host"]
    [target] = select_targets(("raw_asgi",), ("gunicorn",))
    argv = target.pair.argv(host="127.0.0.1", port=9, workers=1)
    assert "impls.floors.raw_asgi:app" in argv
    assert "uvicorn_worker.UvicornWorker" in argv


def test_rounds_alternate_direction_and_configs_get_their_own_start() -> None:
    method = method_for(quick=False, repeats=2, concurrency=(8, 64))
    targets = select_targets(("fastapi",), ("uvicorn", "granian"), with_floors=False)
    chosen = [scenario("json"), scenario("limited"), scenario("stream-items")]
    groups = build_plan(targets, chosen, method)
    order = [(g.round, g.target.id, g.config) for g in groups]
    limited = "LAB_RATE_LIMIT=1000000000/60s"
    assert order == [
        (1, "fastapi-uvicorn", "default"),
        (1, "fastapi-uvicorn", limited),
        (1, "fastapi-granian", "default"),
        (1, "fastapi-granian", limited),
        (2, "fastapi-granian", "default"),  # even rounds run the targets in reverse
        (2, "fastapi-granian", limited),
        (2, "fastapi-uvicorn", "default"),
        (2, "fastapi-uvicorn", limited),
    ]
    first = [c.id for c in groups[0].cells]
    assert first == [
        "fastapi-uvicorn__json__c8__r1",
        "fastapi-uvicorn__json__c64__r1",
        "fastapi-uvicorn__stream-items__c4__r1",
    ]  # the scenario's own level
    assert len({c.seed for g in groups for c in g.cells}) == sum(len(g.cells) for g in groups)


def test_floors_run_only_floor_scenarios() -> None:
    method = method_for(quick=True)
    targets = select_targets(("raw_asgi",), ("uvicorn",))
    groups = build_plan(targets, [s for s in scenarios() if s.quick], method)
    assert [c.scenario.id for g in groups for c in g.cells] == ["json"]
    full = build_plan(
        targets, choose_scenarios([], quick=False), method_for(quick=False, repeats=1)
    )
    assert sorted({c.scenario.id for g in full for c in g.cells}) == ["json", "plaintext"]


def test_the_control_runs_on_the_floors_only_when_named() -> None:
    """``json-work`` (docs/performance.md's control: /json after a fixed amount of app work)
    is no part of the contract: a run that names it plays it on every floor that serves it
    and on no pair; a run that does not name it never plays it."""
    work = scenario("json-work")
    assert work.floor_only and not work.quick and not work.experiment_only
    targets = select_targets(("litestar",), ("granian",))
    method = method_for(quick=False, repeats=1)
    named = build_plan(targets, [scenario("json"), work], method)
    cells = {(c.target.id, c.scenario.id) for g in named for c in g.cells}
    assert {t for t, s in cells if s == "json-work"} == {
        "raw_asgi-granian",
        "hello_litestar-granian",
    }
    assert ("litestar-granian", "json") in cells
    for quick in (True, False):
        assert work not in choose_scenarios([], quick=quick)
    assert choose_scenarios(["json-work"], quick=False) == [work]
    for floor in floors():  # every floor serves it: raw callables and hello worlds alike
        assert "json-work" in floor.scenarios, floor.name


def test_method_modes() -> None:
    quick, full = method_for(quick=True), method_for(quick=False)
    assert (quick.repeats, quick.concurrency, quick.workers) == (1, (64,), 1)
    assert full.repeats >= 3
    assert full.concurrency == (8, 64, 256)
    over = method_for(quick=False, duration_s=3, repeats=2, pin=False)
    assert (over.duration_s, over.repeats, over.pin) == (3.0, 2, False)


def test_hello_floors_measure_the_database_path() -> None:
    """The db floor (issue 8): each framework's hello world runs /db, in quick and full runs
    alike, and needs PostgreSQL; the raw callables serve no /db and need nothing."""
    quick = method_for(quick=True)
    assert "db" in quick.floor_scenarios
    targets = select_targets(("litestar",), ("uvicorn",))
    by_id = {t.id: t for t in targets}
    assert by_id["hello_litestar-uvicorn"].needs_services
    assert not by_id["raw_asgi-uvicorn"].needs_services
    groups = build_plan(targets, [s for s in scenarios() if s.quick], quick)
    cells = {(c.target.id, c.scenario.id) for g in groups for c in g.cells}
    assert ("hello_litestar-uvicorn", "db") in cells
    assert ("hello_litestar-uvicorn", "json") in cells
    assert ("raw_asgi-uvicorn", "json") in cells
    assert ("raw_asgi-uvicorn", "db") not in cells
    assert ("hello_litestar-uvicorn", "fortunes") not in cells  # a floor serves what it declares
    for floor in floors():
        if floor.floor_of == "framework":
            assert "db" in floor.scenarios and floor.services, floor.name


def test_a_share_of_capacity_follows_the_closed_loop_cell_it_is_taken_of() -> None:
    method = method_for(quick=False, repeats=1, rates=("1000", "50%"))
    assert method.concurrency == (64,)  # the generator's pool, not the closed-loop sweep
    [target] = select_targets(("fastapi",), ("uvicorn",), with_floors=False)
    [group] = build_plan([target], [scenario("json")], method)
    assert [c.id for c in group.cells] == [
        "fastapi-uvicorn__json__c64__r1",
        "fastapi-uvicorn__json__c64__q1000__r1",
        "fastapi-uvicorn__json__c64__q50pct__r1",
    ]
    assert group.cells[2].capacity_cell == group.cells[0].id


def test_absolute_rates_alone_need_no_closed_loop_cell() -> None:
    method = method_for(quick=False, repeats=1, rates=("2000",))
    [target] = select_targets(("fastapi",), ("uvicorn",), with_floors=False)
    [group] = build_plan([target], [scenario("json")], method)
    assert [c.id for c in group.cells] == ["fastapi-uvicorn__json__c64__q2000__r1"]


def test_declared_rates_come_from_each_scenario() -> None:
    method = method_for(quick=False, repeats=1, rates=("declared",))
    [target] = select_targets(("fastapi",), ("uvicorn",), with_floors=False)
    groups = build_plan([target], [scenario("json"), scenario("fortunes")], method)
    declared = [o.label for o in scenario("json").rates]
    assert declared  # matrix.toml gives json its rates; fortunes has none, so no cells
    assert {c.scenario.id for g in groups for c in g.cells} == {"json"}
    assert [c.offered.label for c in groups[0].cells if c.offered] == declared


@pytest.mark.parametrize("text", ["0%", "150%", "fast", "%"])
def test_a_rate_that_is_neither_a_number_nor_a_share_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"a rate|a share"):
        parse_offered(text)

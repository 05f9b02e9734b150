"""The technique experiments' declarations, plan, verdicts and generated pages (no load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.method import method_for
from bench.plan import build_plan
from bench.reporting import Run, claims, experiments
from bench.targets import experiment_targets
from lab import matrix
from lab.experiments import experiment
from lab.experiments import experiments as all_experiments
from lab.scenarios import scenario, scenarios


def test_every_experiment_is_well_formed() -> None:
    names = [e.name for e in all_experiments()]
    assert len(names) == len(set(names)) >= 18
    for exp in all_experiments():
        assert exp.variant(exp.baseline)
        fw, _, srv = exp.pair.partition("-")
        matrix.pair(fw, srv)  # a declared pair
        for v in exp.variants:
            if v.pair:
                matrix.pair(*v.pair.split("-", 1))
            assert exp.scenarios_of(v)
            # a variant changes how the server starts, or (codecs) which request is sent
            assert (
                v.env
                or v.vars
                or v.workers
                or v.pair
                or v.scenarios
                or v.name == exp.baseline
                or v.doc
            )


def test_experiment_only_scenarios_stay_out_of_the_matrix_runs() -> None:
    from bench.cli import choose_scenarios

    only = {s.id for s in scenarios() if s.experiment_only}
    assert "cached-item-revalidate" in only
    for quick in (True, False):
        assert not only & {s.id for s in choose_scenarios([], quick=quick)}
    used = {sc for e in all_experiments() for v in e.variants for sc in e.scenarios_of(v)}
    assert only <= used, only - used  # no orphan experiment-only scenario


def test_variants_start_through_the_registry_with_their_settings() -> None:
    targets = {t.id: t for t in experiment_targets(("event-loop", "workers", "async-vs-sync"))}
    asyncio = targets["event-loop~asyncio"].pair.argv(host="127.0.0.1", port=1, workers=1)
    assert asyncio[asyncio.index("--loop") + 1] == "asyncio"
    assert asyncio[asyncio.index("--http") + 1] == "httptools"  # the registry's default kept
    assert targets["workers~workers-2"].workers == 2
    assert targets["workers~workers-2"].server_cpus == (0, 1)
    assert targets["async-vs-sync~fastapi-def"].pair.env["LAB_HANDLERS"] == "sync"
    flask = targets["async-vs-sync~flask-gthread"].pair
    assert (flask.framework.name, flask.server.name) == ("flask", "gunicorn-gthread")
    assert all(t.needs_services and t.role == "variant" for t in targets.values())


def test_plan_interleaves_variants_and_uses_their_scenarios() -> None:
    method = method_for(quick=False, experiments=True)
    assert method.mode == "experiments"
    groups = build_plan(experiment_targets(("compression", "db-pool")), [], method)
    rounds = [g.round for g in groups]
    assert rounds == sorted(rounds) and set(rounds) == set(range(1, method.repeats + 1))
    first = [g for g in groups if g.round == 1]
    assert [g.target.id for g in first][:2] == ["compression~identity", "compression~gzip-1"]
    by_target = {g.target.id: g.cells for g in first}
    assert [c.scenario.id for c in by_target["compression~identity"]] == ["report-identity"]
    assert [c.scenario.id for c in by_target["compression~br-11"]] == ["report-br"]
    # the experiment's level wins over the scenario's (report-* declare 16)
    assert {c.concurrency for c in by_target["db-pool~connect"]} == {16}
    assert {c.concurrency for c in by_target["compression~br-11"]} == {4}
    assert len({c.id for g in groups for c in g.cells}) == sum(len(g.cells) for g in groups)


def test_revalidate_needs_one_fixed_path() -> None:
    sc = scenario("cached-item-revalidate")
    assert sc.load.revalidate and sc.ids is None and 304 in sc.expect
    from bench.load import wrk_env

    assert wrk_env(sc, Path("/tmp/x.json"), seed=1)["LAB_WRK_REVALIDATE"] == "1"


def test_an_overload_scenario_says_what_is_good() -> None:
    sc = scenario("aggregate-overload")
    assert sc.overload and sc.in_matrix and set(sc.expect) == {200, 503, 504}
    assert sc.load.body_contains == '"errors":[]' and sc.concurrency == (256,)
    # the matrix asks the plain fan-out only for the levels a worker can answer in time
    assert 256 not in (scenario("aggregate").concurrency or ())
    from lab.scenarios import _scenario

    with pytest.raises(ValueError, match=r"overload needs load\.body_contains"):
        _scenario("x", {"path": "/json", "overload": True})


# -- verdicts and pages from a synthetic run ------------------------------------------------


def _row(
    exp: str, variant: str, sc: str, rps: float, *, spread: float = 0.02, **extra: Any
) -> dict[str, Any]:
    return {
        "experiment": exp,
        "variant": variant,
        "target": f"{exp}~{variant}",
        "role": "variant",
        "scenario": sc,
        "concurrency": 64,
        "outcome": "ok",
        "reasons": [],
        "repeats": 3,
        "repeats_ok": 3,
        "rps": {"median": rps, "min": rps * 0.99, "max": rps * 1.01, "spread": spread},
        "noisy": False,
        "latency_us": {
            "p50": extra.get("p50", 1000.0),
            "p90": 2000.0,
            "p99": 5000.0,
            "p99_9": 6000.0,
            "max": 7000.0,
        },
        "cpu_s_per_1k": 0.1,
        "peak_rss_bytes": extra.get("rss", 80 * 2**20),
        "bytes_per_response": extra.get("bytes", 200.0),
        "client_saturated": False,
        "latency_censored": False,
        "statuses": {"200": 100},
        "header_counts": {},
        "probe": None,
        "floors": {"server": None, "framework": None},
    }


def _run(tmp_path: Path, rows: list[dict[str, Any]]) -> Run:
    manifest = {"run_id": "synthetic", "method": {"mode": "experiments", "repeats": 3}}
    return Run(path=tmp_path, manifest=manifest, rows=rows)


def test_verdicts_follow_the_published_rule(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        [
            _row("json-codec", "stdlib", "json", 1000.0, spread=0.05),
            _row("json-codec", "orjson", "json", 1030.0),
            _row("json-codec", "stdlib", "report-identity", 100.0),
            _row("json-codec", "orjson", "report-identity", 250.0),
            _row("compression", "identity", "report-identity", 100.0, bytes=100_000.0),
            _row("compression", "gzip-6", "report-gzip", 60.0, bytes=15_000.0),
        ],
    )
    base = {"experiment": "json-codec", "variant": "orjson", "over": "stdlib", "metric": "rps"}
    within_noise = claims.judge(run, {**base, "scenario": "json"})
    assert within_noise.label == "does not hold"  # x1.03 is inside the 5% spread
    big = claims.judge(run, {**base, "scenario": "report-identity", "claimed": 4.0})
    assert big.label == "holds partly" and "x2.50" in big.measured
    assert (
        claims.judge(run, {**base, "scenario": "report-identity", "claimed": 2.0}).label == "holds"
    )
    saving = {
        "experiment": "compression",
        "scenario": "report-gzip",
        "variant": "gzip-6",
        "over": "identity",
        "metric": "bytes",
        "claimed_saving": 0.8,
    }
    assert (
        claims.judge(run, saving).label == "holds"
        and "85% saved" in claims.judge(run, saving).measured
    )
    figure = {
        "experiment": "json-codec",
        "scenario": "json",
        "variant": "orjson",
        "metric": "rps",
        "at_least": 20000,
    }
    assert claims.judge(run, figure).label == "does not hold"
    assert claims.judge(run, {"untestable": "no CDN"}).label == "cannot be tested here"
    missing = claims.judge(run, {**base, "scenario": "db"})
    assert missing.label == "not measured"


def test_pages_get_their_block_from_the_run(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        [
            _row("http-cache", "off", "cached-item-revalidate", 900.0, bytes=400.0),
            _row("http-cache", "on", "cached-item-revalidate", 1200.0, bytes=150.0),
        ],
    )
    docs = tmp_path / "techniques"
    docs.mkdir()
    page = docs / "http-cache.md"
    page.write_text(
        f"# HTTP caching\n\nprose\n\n{experiments.BEGIN}\nold\n{experiments.END}\n\nafter\n"
    )
    pytest.importorskip("matplotlib")
    written = experiments.update_pages(run, docs, link_base="../../results/synthetic")
    text = page.read_text()
    assert page in written and (docs / "img" / "experiment-http-cache.svg").exists()
    assert "old" not in text and text.startswith("# HTTP caching") and text.endswith("after\n")
    assert "| **off** | cached-item-revalidate | 64 | 900 |" in text
    assert "| on | cached-item-revalidate | 64 | 1,200 |" in text and "1.33x" in text
    # idempotent: a second pass rewrites the same block
    experiments.update_pages(run, docs, link_base="../../results/synthetic")
    assert page.read_text() == text
    assert json.dumps(experiment("http-cache").baseline) == '"off"'


def test_an_overload_experiment_is_read_by_good_answers(tmp_path: Path) -> None:
    """A variant that sheds answers more requests/s but fewer of them good would look better
    on requests/s; the page shows good/s first and the claim is judged on it, with the noise
    of good/s."""
    off = _row("admission", "off", "aggregate-overload", 400.0, spread=0.03)
    off["good_rps"] = {"median": 200.0, "min": 190.0, "max": 210.0, "spread": 0.1}
    off["statuses"] = {"200": 600, "504": 400}
    shed = _row("admission", "max-64", "aggregate-overload", 3000.0, spread=0.03)
    shed["good_rps"] = {"median": 230.0, "min": 200.0, "max": 260.0, "spread": 0.26}
    shed["statuses"] = {"200": 80, "503": 920}
    run = _run(tmp_path, [off, shed])
    text = experiments.markdown(run, experiment("admission"))
    assert "| good/s | spread | good x off | req/s |" in text
    assert "| max-64 | aggregate-overload | 64 | 230 | 26% | 1.15x | 3,000 |" in text
    assert "200 8%, 503 92%" in text
    claim = {
        "experiment": "admission",
        "scenario": "aggregate-overload",
        "variant": "max-64",
        "over": "off",
        "metric": "good_rps",
    }
    verdict = claims.judge(run, claim)
    # x1.15 on good answers is inside their 26% spread, whatever requests/s says
    assert verdict.label == "does not hold", verdict
    assert "230 good answers/s vs off 200 good answers/s" in verdict.measured
    assert "noise ±26%" in verdict.measured


def test_claims_cite_declared_experiments_only() -> None:
    """`lab techniques` rewrites docs/claims.md only from a run holding every experiment
    the claims cite; a run of one new experiment fills its page and leaves the verdicts."""
    cited = claims.experiments_cited(matrix.REPO_ROOT / "docs" / "claims.toml")
    declared = {e.name for e in all_experiments()}
    assert {"db-pool", "compression"} <= cited <= declared
    assert "db-reset" not in cited  # no article claims it, so its run need not hold the rest

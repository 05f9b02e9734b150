"""Which pairs the suites run (tests/support/pairs.py): a declared pair is never quietly left
out, and the full shared-code tables run on one pair per framework."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab import matrix
from tests.support import pairs


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Selections computed anew (they are cached per LAB_TEST_PAIRS value)."""
    pairs._select.cache_clear()
    yield monkeypatch
    pairs._select.cache_clear()


def test_every_declared_pair_runs_and_each_framework_has_one_tables_pair(fresh) -> None:
    fresh.delenv("LAB_TEST_PAIRS", raising=False)
    sel = pairs.select()
    assert [p.id for p in sel.pairs] == [p.id for p in matrix.pairs()]
    assert sorted(p.framework.name for p in sel.tables) == sorted(
        f.name for f in matrix.frameworks()
    )
    assert {p.id for p in sel.tables} <= {p.id for p in sel.pairs}
    assert sel.left_out == ()


def test_a_declared_pair_without_its_app_is_an_error(fresh) -> None:
    fresh.delenv("LAB_TEST_PAIRS", raising=False)
    fresh.setattr(pairs, "app_file_exists", lambda p: p.framework.name != "aiohttp")
    with pytest.raises(ValueError, match=r"aiohttp-aiohttp, aiohttp-gunicorn, but impls/aiohttp"):
        pairs.select()


def test_lab_test_pairs_narrows_and_the_tables_follow(fresh) -> None:
    fresh.setenv("LAB_TEST_PAIRS", "litestar-hypercorn,flask-granian")
    sel = pairs.select()
    assert [p.id for p in sel.pairs] == ["litestar-hypercorn", "flask-granian"]
    assert [p.id for p in sel.tables] == ["litestar-hypercorn", "flask-granian"]
    assert "fastapi-uvicorn" in sel.left_out


def test_one_per_framework_selects_the_tables_pairs(fresh) -> None:
    fresh.setenv("LAB_TEST_PAIRS", pairs.ONE_PER_FRAMEWORK)
    sel = pairs.select()
    assert sel.pairs == sel.tables
    assert len(sel.pairs) == len(matrix.frameworks())


def test_unknown_pairs_are_refused(fresh) -> None:
    fresh.setenv("LAB_TEST_PAIRS", "fastapi-uvicorn,django-nope")
    with pytest.raises(ValueError, match="django-nope"):
        pairs.select()


def test_markers_choose_the_pairs_of_a_test(fresh) -> None:
    fresh.delenv("LAB_TEST_PAIRS", raising=False)
    sel = pairs.select()
    assert sel.for_test(per_framework=False) == sel.pairs
    assert sel.for_test(per_framework=True) == sel.tables
    only = sel.for_test(per_framework=False, frameworks=("fastapi",))
    assert only and {p.framework.name for p in only} == {"fastapi"}


def test_a_test_missing_a_pair_is_reported() -> None:
    wanted = {"t::a": {"x-1", "x-2"}, "t::b": {"x-1"}}
    assert pairs.uncovered({"t::a": {"x-1", "x-2"}, "t::b": {"x-1"}}, wanted) == []
    assert pairs.uncovered({"t::a": {"x-1"}, "t::b": {"x-1"}}, wanted) == [
        "t::a: missing ['x-2'], unexpected []"
    ]

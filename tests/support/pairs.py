"""Which framework x server pairs the suites run, and where the full shared-code tables run.

Every pair ``lab.matrix`` declares runs, narrowed by ``LAB_TEST_PAIRS`` for a quick loop
(comma-separated ids, or ``one-per-framework``: the pairs that run the full tables). A declared
pair whose app module does not exist is an error, never a pair quietly left out.

Tests that exercise the shared domain code through long tables of cases (validation,
negotiation, injection-looking values) are marked ``per_framework``: they run on one pair per
framework, since every server of a framework runs the same adapter over the same ``common/``
code. What a server can change (headers, body limits, streaming, stops, deviations, limits,
and each route's wiring) runs on every pair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Any

from lab import matrix

__all__ = ["FRAMEWORKS", "PER_FRAMEWORK", "Selection", "select", "uncovered"]

# Markers (pyproject.toml registers them): ``per_framework``, and ``frameworks(*names)`` for a
# test that only some frameworks can run (a switch that applies to them alone).
PER_FRAMEWORK = "per_framework"
FRAMEWORKS = "frameworks"
ONE_PER_FRAMEWORK = "one-per-framework"  # LAB_TEST_PAIRS: the pairs of the full tables

# The server whose pair runs a framework's full tables, chosen so that between them the four
# frameworks cover four servers; a framework not listed uses its first declared server.
TABLES_SERVER = {
    "fastapi": "uvicorn",
    "litestar": "granian",
    "aiohttp": "aiohttp",
    "flask": "gunicorn",
}


@dataclass(frozen=True)
class Selection:
    pairs: tuple[matrix.Pair, ...]  # the pairs that run, in declaration order
    tables: tuple[matrix.Pair, ...]  # one per framework among them: the full tables' pairs
    left_out: tuple[str, ...]  # declared pairs LAB_TEST_PAIRS leaves out

    def for_test(
        self, *, per_framework: bool, frameworks: tuple[str, ...] = ()
    ) -> tuple[matrix.Pair, ...]:
        """The pairs a test runs on: every pair, or one per framework, of the frameworks it
        names (all of them by default)."""
        pairs = self.tables if per_framework else self.pairs
        return tuple(p for p in pairs if not frameworks or p.framework.name in frameworks)

    def for_item(self, node: Any) -> tuple[matrix.Pair, ...]:
        """:meth:`for_test` by a test's markers (``node``: a pytest item or definition)."""
        only = node.get_closest_marker(FRAMEWORKS)
        return self.for_test(
            per_framework=node.get_closest_marker(PER_FRAMEWORK) is not None,
            frameworks=tuple(only.args) if only is not None else (),
        )


def app_file_exists(pair: matrix.Pair) -> bool:
    module = pair.framework.app.split(":", 1)[0]
    base = matrix.REPO_ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@cache
def _select(raw: str) -> Selection:
    declared = tuple(matrix.pairs())
    known = {p.id for p in declared}
    wanted = {w.strip() for w in raw.split(",") if w.strip()} if raw else None
    if raw == ONE_PER_FRAMEWORK:
        wanted = {p.id for p in _select("").tables}
    elif wanted is not None and (unknown := wanted - known):
        raise ValueError(
            f"LAB_TEST_PAIRS names unknown pairs {sorted(unknown)}; "
            f"known: {', '.join(sorted(known))} (or {ONE_PER_FRAMEWORK})"
        )
    pairs = tuple(p for p in declared if wanted is None or p.id in wanted)
    if missing := [p for p in pairs if not app_file_exists(p)]:
        apps = sorted({p.framework.app.split(":", 1)[0].replace(".", "/") + ".py" for p in missing})
        raise ValueError(
            f"lab/matrix.toml declares {', '.join(p.id for p in missing)}, but "
            f"{', '.join(apps)} does not exist: write the app, or leave the pairs out with "
            "LAB_TEST_PAIRS"
        )
    tables: dict[str, matrix.Pair] = {}
    for pair in pairs:
        name = pair.framework.name
        preferred = TABLES_SERVER.get(name, pair.framework.servers[0])
        if name not in tables or pair.server.name == preferred:
            tables[name] = pair
    # Keep declaration order.
    chosen = {p.id for p in tables.values()}
    return Selection(
        pairs=pairs,
        tables=tuple(p for p in pairs if p.id in chosen),
        left_out=tuple(p.id for p in declared if p not in pairs),
    )


def select() -> Selection:
    return _select(os.environ.get("LAB_TEST_PAIRS", "").strip())


def uncovered(covered: dict[str, set[str]], wanted: dict[str, set[str]]) -> list[str]:
    """For each test (by name), the pairs its items cover against those it should cover: one
    line per test where they differ."""
    return [
        f"{test}: missing {sorted(wanted[test] - got)}, unexpected {sorted(got - wanted[test])}"
        for test, got in covered.items()
        if got != wanted[test]
    ]

"""Which framework x server pairs the conformance suite runs: every pair ``lab.matrix``
declares whose app module exists, narrowed by ``LAB_TEST_PAIRS`` (comma-separated ids)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from lab import matrix

__all__ = ["Selection", "select"]


@dataclass(frozen=True)
class Selection:
    pairs: tuple[matrix.Pair, ...]  # every declared pair (the parametrization)
    selected: frozenset[str]  # ids that run
    left_out: dict[str, str]  # id → why it does not run


def app_file_exists(pair: matrix.Pair) -> bool:
    module = pair.framework.app.split(":", 1)[0]
    base = matrix.REPO_ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def select() -> Selection:
    pairs = tuple(matrix.pairs())
    known = {p.id for p in pairs}
    raw = os.environ.get("LAB_TEST_PAIRS", "").strip()
    wanted = {w.strip() for w in raw.split(",") if w.strip()} if raw else None
    if wanted is not None and (unknown := wanted - known):
        raise ValueError(
            f"LAB_TEST_PAIRS names unknown pairs {sorted(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    selected, left_out = set(), {}
    for pair in pairs:
        if not app_file_exists(pair):
            module = pair.framework.app.split(":", 1)[0].replace(".", "/")
            left_out[pair.id] = f"no {module}.py yet"
        elif wanted is not None and pair.id not in wanted:
            left_out[pair.id] = "not in LAB_TEST_PAIRS"
        else:
            selected.add(pair.id)
    return Selection(pairs, frozenset(selected), left_out)

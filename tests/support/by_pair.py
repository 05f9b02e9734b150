"""pytest-xdist's load scheduling with each pair's tests as one unit of work.

A worker that runs all of a pair's tests starts the pair's session-scoped servers once; split
over workers, every worker would start them again (launches are most of the suite's time).
pytest-xdist's ``--dist loadgroup`` would do this from ``xdist_group`` marks, but it passes a
test's group to the scheduler by rewriting the test's node id, which pytest 9.2's structured
node ids no longer allow (pytest-dev/pytest-xdist#1386: the groups are silently dropped). So
the scope of a test is read from its id instead: the pair the suites parametrize first
(``test_x[fastapi-uvicorn-...]``). Every other test is a unit of its own, as under ``load``.
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from tests.support import pairs as pair_selection

__all__ = ["ByPairScheduling"]


class ByPairScheduling(LoadScopeScheduling):
    """Scopes are pairs; xdist's ``loadscope`` hands out the largest scopes first."""

    def __init__(self, config: pytest.Config, log: Any | None = None) -> None:
        super().__init__(config, log)
        # Longest first: "flask-gunicorn" is the start of "flask-gunicorn-gthread".
        ids = (p.id for p in pair_selection.select().pairs)
        self._pair_ids = sorted(ids, key=len, reverse=True)

    def _split_scope(self, nodeid: str) -> str:
        params = nodeid.partition("[")[2]
        for pair_id in self._pair_ids:
            if params == f"{pair_id}]" or params.startswith(f"{pair_id}-"):
                return pair_id
        return nodeid

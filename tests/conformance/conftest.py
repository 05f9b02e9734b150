"""Fixtures of the black-box suite: one real server process per pair per configuration.

``pair`` is parametrized at session scope over the pairs ``tests.support.pairs`` selects (every
declared pair, or ``LAB_TEST_PAIRS``; ``per_framework`` tests over one pair per framework,
``frameworks(...)`` tests over those frameworks' pairs), so pytest runs all of one pair's tests
before the next pair's and each pair's default server starts once. Other configurations are
started by the modules that need them, through the ``launch`` fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab import matrix
from tests.support import pairs as pair_selection
from tests.support.client import LabClient
from tests.support.servers import Server, ServerConfig, running_pair, running_upstream
from tests.support.services import Services

DEFAULT = ServerConfig("default")

# Small limit, a trusted proxy, a short cache TTL, two workers: the limiter (SPEC §3.7, also
# across workers), X-Forwarded-For, and Cache-Control following LAB_CACHE_TTL (§3.6).
# Small limits: five requests a minute, a 7 s cache TTL, one pooled Redis connection per
# worker, so that a burst of concurrent requests must queue for it rather than degrade, and
# three background tasks per worker (SPEC §3.15).
LIMITS = ServerConfig(
    "limits",
    {
        "LAB_RATE_LIMIT": "5/60s",
        "LAB_TRUSTED_PROXIES": "127.0.0.1",
        "LAB_CACHE_TTL": "7",
        "LAB_REDIS_POOL_SIZE": "1",
        "LAB_MAX_TASKS": "3",
    },
    workers=2,
)


# --- pair parametrization ----------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrized by id (a string): pytest groups items by a hashable parameter's value, so
    # each pair's items run together and its session-scoped servers start once, also when a
    # ``per_framework`` test is parametrized over fewer pairs than its neighbours.
    if "pair_id" in metafunc.fixturenames:
        ids = [p.id for p in pair_selection.select().for_item(metafunc.definition)]
        metafunc.parametrize("pair_id", ids, ids=ids, scope="session")


@pytest.fixture(scope="session")
def pair(pair_id: str) -> matrix.Pair:
    """The framework x server pair under test."""
    return next(p for p in matrix.pairs() if p.id == pair_id)


# --- processes ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def upstream(log_dir: Path) -> Iterator[str]:
    """The URL of a normal upstream service (SPEC §3.12)."""
    with running_upstream(log_dir) as url:
        yield url


@pytest.fixture(scope="session")
def flaky_upstream(log_dir: Path) -> Iterator[str]:
    """An upstream answering 503 to every 3rd call (SPEC §3.12's ``--fail-every``)."""
    with running_upstream(log_dir, fail_every=3) as url:
        yield url


Launch = Callable[..., contextlib.AbstractContextManager[Server]]


@pytest.fixture(scope="session")
def launch(services: Services, upstream: str, log_dir: Path) -> Launch:
    """``with launch(pair, config, services_=..., upstream_url=...) as server:`` runs the pair
    until the block ends, on the session's services and upstream unless told otherwise."""

    def _launch(
        pair: matrix.Pair,
        config: ServerConfig = DEFAULT,
        *,
        services_: Services | None = None,
        upstream_url: str | None = None,
    ) -> contextlib.AbstractContextManager[Server]:
        return running_pair(
            pair,
            config,
            services=services_ or services,
            upstream_url=upstream_url or upstream,
            log_dir=log_dir,
        )

    return _launch


@pytest.fixture(scope="session")
def server(pair: matrix.Pair, launch: Launch) -> Iterator[Server]:
    """The pair in its default configuration, one per pair for the whole session."""
    with launch(pair) as srv:
        yield srv


@pytest.fixture(scope="session")
def limits_server(pair: matrix.Pair, launch: Launch) -> Iterator[Server]:
    with launch(pair, LIMITS) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[LabClient]:
    with server.client() as c:
        yield c

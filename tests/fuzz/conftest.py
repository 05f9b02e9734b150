"""Fixtures of the fuzz suite: one server per pair it fuzzes, started for the whole session.

The pairs are chosen as the conformance suite's are (``tests.support.pairs``: the fuzz tests
are ``per_framework``, so one pair per framework) and the processes are its
``ManagedProcess`` (own session, log file, ``/health`` polled, SIGTERM then SIGKILL, no
process left behind). The launcher itself is a small local one: the conformance suite's
``launch`` fixture lives in ``tests/conformance/conftest.py``, which does not apply here.

Each pair runs with settings that keep a bounded fuzz run meaningful (``FUZZ_ENV``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import matrix
from tests.fuzz import FuzzServer
from tests.support import pairs as pair_selection
from tests.support.servers import HOST, ServerConfig, running_pair, running_upstream
from tests.support.services import Services

FUZZ_ENV = {
    # Hundreds of requests from one client: the limiter must not turn the run into 429s
    # (429 is documented and conforming, but it would hide /limited's 200 path).
    "LAB_RATE_LIMIT": "1000000/60s",
    # Let generated X-Forwarded-For values reach the client-key parser (SPEC §3.7).
    "LAB_TRUSTED_PROXIES": HOST,
    # /aggregate with delay_ms over 200 times out in 0.2 s instead of 1 s: the 504 path is
    # exercised without spending seconds per example (the run caps delay_ms at 300).
    "LAB_UPSTREAM_TIMEOUT_MS": "200",
}


# --- pair parametrization (as tests/conformance/conftest.py does) -------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fuzz_pair" in metafunc.fixturenames:
        pairs = pair_selection.select().for_item(metafunc.definition)
        # Indirect (through the ``fuzz_pair`` fixture below): pytest numbers a direct parameter
        # by its position in the cartesian product, so with a second parametrization (the fuzz
        # test's operations) the unhashable Pair values would get other numbers than in other
        # modules, pytest would not group one pair's tests across modules, and each module
        # would start the pair's server again. Its own name (not the conformance suite's
        # ``pair``) keeps pytest's grouping of the two suites' servers apart in one session.
        metafunc.parametrize(
            "fuzz_pair", pairs, ids=[p.id for p in pairs], scope="session", indirect=True
        )


@pytest.fixture(scope="session")
def fuzz_pair(request: pytest.FixtureRequest) -> matrix.Pair:
    """The framework x server pair of this test (parametrized by ``pytest_generate_tests``)."""
    value: matrix.Pair = request.param
    return value


# --- processes: the conformance suite's launcher, with the fuzz run's configuration -------------

FUZZ_CONFIG = ServerConfig("fuzz", FUZZ_ENV, workers=1)


@pytest.fixture(scope="session")
def fuzz_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-logs")


@pytest.fixture(scope="session")
def fuzz_upstream(fuzz_log_dir: Path) -> Iterator[str]:
    """One upstream service (SPEC §3.12) shared by every pair of the run."""
    with running_upstream(fuzz_log_dir) as url:
        yield url


@pytest.fixture(scope="session")
def fuzz_server(
    fuzz_pair: matrix.Pair, services: Services, fuzz_upstream: str, fuzz_log_dir: Path
) -> Iterator[FuzzServer]:
    """The pair under ``lab serve`` (one worker) with ``FUZZ_ENV``, for the whole session."""
    with running_pair(
        fuzz_pair, FUZZ_CONFIG, services=services, upstream_url=fuzz_upstream, log_dir=fuzz_log_dir
    ) as server:
        yield server

"""The reliability suite runs pairs the way the conformance suite does: the same pair
parametrization (``LAB_TEST_PAIRS``), launcher, upstream and logs, imported from its conftest
rather than copied."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.conftest import (  # noqa: F401  (fixtures and hooks, used by name)
    launch,
    log_dir,
    pair,
    pytest_generate_tests,
    upstream,
)
from tests.support.services import PrivateServices, Services


@pytest.fixture(scope="session")
def private() -> Iterator[PrivateServices]:
    """PostgreSQL and Redis of the suite's own, seeded, on fixed ports so that a restart
    keeps the URL: the fault tests stop and start them under running servers."""
    with PrivateServices("lab-test-reliability") as services:
        yield services


@pytest.fixture(scope="session")
def services(private: PrivateServices) -> Services:
    """The launcher's default services are the private ones: no second pair is started."""
    return private.urls

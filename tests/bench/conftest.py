"""Fixtures shared by the harness tests that start real servers through a ``lab`` command."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from bench import preflight


@pytest.fixture(scope="module")
def lab_env(services: Any) -> Iterator[None]:
    """The run's PostgreSQL and Redis as the ``lab`` command reads them (its environment),
    checked to be seeded, for the module's tests; the variables are restored after it."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAB_DATABASE_URL", services.database_url)
        env.setenv("LAB_REDIS_URL", services.redis_url)
        preflight.check_seeded(services.database_url)
        yield


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in this process during the test, as under a terminal.
    A suite started as a background job of a non-interactive shell inherits SIGINT ignored
    (POSIX), and Python then installs no handler for it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

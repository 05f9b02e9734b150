"""Session-wide fixtures: the PostgreSQL and Redis every server of the run uses, direct
connections to them for checks the HTTP surface cannot make, and the pair report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import pairs as pair_selection
from tests.support import processes
from tests.support.services import PrivateServices, Services, init_db, resolve_mode


def pytest_configure(config: pytest.Config) -> None:
    """Fail fast, before collection, on a LAB_TEST_PAIRS naming no declared pair."""
    try:
        pair_selection.select()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    sel = pair_selection.select()
    lines = [
        "conformance pairs: "
        + (", ".join(p.id for p in sel.pairs if p.id in sel.selected) or "none")
    ]
    by_reason: dict[str, list[str]] = {}
    for pair_id, reason in sel.left_out.items():
        by_reason.setdefault(reason, []).append(pair_id)
    for reason, ids in by_reason.items():
        lines.append(f"conformance pairs left out ({reason}): {', '.join(ids)}")
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the server logs that hold a traceback: not a failure by itself (a 500 is caught
    by the client), but worth reading."""
    noisy = [p for p in processes.STARTED if "Traceback" in p.log_text()]
    if noisy:
        terminalreporter.section("server logs with tracebacks")
        for proc in noisy:
            terminalreporter.write_line(f"{proc.name}: {proc.log_path}")


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """PostgreSQL and Redis URLs for the session, seeded (``LAB_TEST_SERVICES``)."""
    mode, urls = resolve_mode()
    if mode == "urls":
        assert urls is not None
        init_db(urls.database_url)
        yield urls
        return
    with PrivateServices("lab-test-session") as private:
        yield private.urls


@pytest.fixture(scope="session")
def db(services: Services) -> Iterator[Any]:
    """A direct autocommit psycopg connection to the session's database."""
    import psycopg

    with psycopg.connect(services.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def redis_client(services: Services) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(services.redis_url)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()

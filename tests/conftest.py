"""Session-wide fixtures: the PostgreSQL and Redis every server of the run uses, direct
connections to them for checks the HTTP surface cannot make, and the pair report."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import pairs as pair_selection
from tests.support import processes
from tests.support.services import PrivateServices, Services, init_db, resolve_mode


def pytest_configure(config: pytest.Config) -> None:
    """Fail fast, before collection, on a LAB_TEST_PAIRS naming no declared pair or a declared
    pair whose app does not exist."""
    try:
        pair_selection.select()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    sel = pair_selection.select()
    lines = [
        "pairs: " + (", ".join(p.id for p in sel.pairs) or "none"),
        "full shared-code tables on: " + ", ".join(p.id for p in sel.tables),
    ]
    if sel.left_out:
        lines.append(f"pairs left out by LAB_TEST_PAIRS: {', '.join(sel.left_out)}")
    return lines


def pair_of(item: pytest.Item) -> str | None:
    """The id of the pair an item runs against (the conformance and reliability suites'
    ``pair_id``, the fuzz suite's ``fuzz_pair``), or None."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "pair_id" in params:
        return str(params["pair_id"])
    if "fuzz_pair" in params:
        return str(params["fuzz_pair"].id)
    return None


# First, so that pytest's -k and -m deselection cannot hide a pair that fell out of a
# parametrization.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check that every test parametrized by pair covers exactly the pairs it should (every
    selected pair, or one per framework for ``per_framework`` tests, of the frameworks a
    ``frameworks`` marker names): a pair that falls out of the parametrization fails the run
    instead of passing unseen."""
    sel = pair_selection.select()
    covered: dict[str, set[str]] = {}
    wanted: dict[str, set[str]] = {}
    for item in items:
        pair_id = pair_of(item)
        if pair_id is None:
            continue
        test = item.nodeid.split("[", 1)[0]
        covered.setdefault(test, set()).add(pair_id)
        wanted.setdefault(test, {p.id for p in sel.for_item(item)})
    if wrong := pair_selection.uncovered(covered, wanted):
        raise pytest.UsageError("tests do not cover their pairs:\n" + "\n".join(wrong))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``pytest -n N --dist loadgroup`` (``nox -s tests``), one worker runs all of a
    pair's tests, so it starts the pair's servers once (``tests/support/by_pair.py``)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.support.by_pair import ByPairScheduling

    return ByPairScheduling(config, log)


# (name, log path, whether the log holds a traceback) of every process a pytest-xdist worker
# started, sent to the controlling process when the worker ends.
_FROM_WORKERS: list[tuple[str, str, bool]] = []


def _started_here() -> list[tuple[str, str, bool]]:
    return [(p.name, str(p.log_path), "Traceback" in p.log_text()) for p in processes.STARTED]


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker
        workeroutput["lab_started"] = _started_here()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    _FROM_WORKERS.extend(
        tuple(row) for row in getattr(node, "workeroutput", {}).get("lab_started", [])
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Where the time went, by module (setup, call and teardown, summed over the workers),
    and how many processes the session started (launches are much of it); then the server
    logs that hold a traceback: not a failure by itself (a 500 is caught by the client), but
    worth reading."""
    by_module: Counter[str] = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                by_module[report.nodeid.split("::", 1)[0]] += report.duration
    if by_module:
        terminalreporter.section("seconds by module (summed over workers)")
        for module, seconds in by_module.most_common(15):
            terminalreporter.write_line(f"{seconds:8.1f}  {module}")
        terminalreporter.write_line(f"{sum(by_module.values()):8.1f}  all {len(by_module)}")
    started = _started_here() + _FROM_WORKERS
    if started:
        upstreams = sum(name.startswith("upstream") for name, _, _ in started)
        terminalreporter.write_line(
            f"processes started: {len(started)} "
            f"({len(started) - upstreams} servers, {upstreams} upstreams)"
        )
    noisy = [(name, log) for name, log, traceback in started if traceback]
    if noisy:
        terminalreporter.section("server logs with tracebacks")
        for name, log in noisy:
            terminalreporter.write_line(f"{name}: {log}")


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

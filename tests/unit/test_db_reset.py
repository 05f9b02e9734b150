"""``LAB_DB_RESET`` (SPEC §6): what asyncpg's pool does to a connection it takes back.

``rollback`` skips asyncpg's reset query, so a released connection keeps its session: safe
only while no SQL of the lab's leaves session state behind. The first tests guard that; the
last shows, on a real PostgreSQL, what the switch changes.
"""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from common.aio.resources import keep_session
from tests.support.services import Services

ROOT = Path(__file__).resolve().parents[2]
Reset = Callable[[asyncpg.Connection], Awaitable[None]] | None

# A string constant that starts like a statement (the lab writes SQL keywords in capitals).
_STATEMENT = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|SET|RESET|LISTEN|DECLARE|LOCK)\b")
# What outlives a statement in the session: settings, notification channels, cursors declared
# outside a transaction, advisory locks. (UPDATE ... SET col = ... is not SET.)
_SESSION_STATE = re.compile(
    r"^\s*(SET|RESET|LISTEN|DECLARE|LOCK)\b|pg_advisory_lock|pg_advisory_xact|set_config"
)


def session_state_statements(source: str) -> list[str]:
    """The statements in a module's string constants that would leave session state."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if _STATEMENT.match(text) and _SESSION_STATE.search(text):
                found.append(text)
    return found


def test_the_guard_finds_session_state() -> None:
    planted = 'A = "SET statement_timeout = 0"\nB = f"SELECT pg_advisory_lock({1})"\n'
    assert session_state_statements(planted) == [
        "SET statement_timeout = 0",
        "SELECT pg_advisory_lock(",
    ]
    harmless = 'W = "UPDATE world AS w SET randomnumber = v.r FROM t"\n'
    assert session_state_statements(harmless) == []


def test_no_sql_of_the_lab_leaves_session_state() -> None:
    sources = [*(ROOT / "common").rglob("*.py"), *(ROOT / "impls").rglob("*.py")]
    assert len(sources) > 20
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sources
        if (found := session_state_statements(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "LAB_DB_RESET=rollback would leak these to the next request"


@pytest.mark.parametrize(("reset", "kept"), [(None, False), (keep_session, True)])
def test_what_a_released_connection_keeps(services: Services, reset: Reset, kept: bool) -> None:
    """One pooled connection, lent twice. The first borrower changes a setting and leaves a
    transaction open. asyncpg's default reset query (``RESET ALL`` among its statements)
    undoes the setting; ``keep_session`` keeps it, which is the technique's whole risk. The
    open transaction is rolled back either way, and asyncpg reports it to the loop."""
    asyncio.run(_lent_twice(services.database_url, reset, kept))


async def _lent_twice(dsn: str, reset: Reset, kept: bool) -> None:
    reported: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _loop, context: reported.append(str(context["message"]))
    )
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, reset=reset)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'lab-db-reset-test'")
            await conn.transaction().start()  # left open on purpose
            first_pid = conn.get_server_pid()
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first_pid  # the same session, lent again
            assert not conn.is_in_transaction()
            name = await conn.fetchval("SHOW application_name")
    finally:
        await pool.close()
    assert (name == "lab-db-reset-test") is kept
    assert any("active transaction" in message for message in reported)

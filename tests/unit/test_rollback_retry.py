"""A statement PostgreSQL rolled back (deadlock, serialization failure) stored nothing: both
twins run it again a bounded number of times, and past that the error stands (the service
maps it to SPEC §2.1's 503)."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest

from common.aio import service as aio_service
from common.sync import service as sync_service


class Flaky:
    """Raises ``error`` on its first ``failures`` calls, then answers ``"stored"``."""

    def __init__(self, error: BaseException, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "stored"

    async def coroutine(self) -> str:
        return self()


ASYNC_ROLLBACKS = [
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.SerializationError("could not serialize access"),
]
SYNC_ROLLBACKS = [
    psycopg.errors.DeadlockDetected("deadlock detected"),
    psycopg.errors.SerializationFailure("could not serialize access"),
]


@pytest.mark.parametrize("error", ASYNC_ROLLBACKS, ids=type)
def test_async_twin_runs_a_rolled_back_statement_again(error: BaseException) -> None:
    flaky = Flaky(error, aio_service.ROLLBACK_RETRIES)
    assert asyncio.run(aio_service._retried_if_rolled_back(flaky.coroutine)) == "stored"
    assert flaky.calls == aio_service.ROLLBACK_RETRIES + 1


@pytest.mark.parametrize("error", ASYNC_ROLLBACKS, ids=type)
def test_async_twin_gives_up_after_its_retries(error: BaseException) -> None:
    flaky = Flaky(error, aio_service.ROLLBACK_RETRIES + 1)
    with pytest.raises(type(error)):
        asyncio.run(aio_service._retried_if_rolled_back(flaky.coroutine))
    assert flaky.calls == aio_service.ROLLBACK_RETRIES + 1
    assert isinstance(error, aio_service.DB_DOWN)  # what `with database:` answers with a 503


@pytest.mark.parametrize("error", SYNC_ROLLBACKS, ids=type)
def test_sync_twin_runs_a_rolled_back_statement_again(error: BaseException) -> None:
    flaky = Flaky(error, sync_service.ROLLBACK_RETRIES)
    assert sync_service._retried_if_rolled_back(flaky) == "stored"
    assert flaky.calls == sync_service.ROLLBACK_RETRIES + 1


@pytest.mark.parametrize("error", SYNC_ROLLBACKS, ids=type)
def test_sync_twin_gives_up_after_its_retries(error: BaseException) -> None:
    flaky = Flaky(error, sync_service.ROLLBACK_RETRIES + 1)
    with pytest.raises(type(error)):
        sync_service._retried_if_rolled_back(flaky)
    assert flaky.calls == sync_service.ROLLBACK_RETRIES + 1
    assert isinstance(error, sync_service.DB_DOWN)


def test_other_errors_are_not_retried() -> None:
    flaky = Flaky(psycopg.errors.UniqueViolation("duplicate key"), 1)
    with pytest.raises(psycopg.errors.UniqueViolation):
        sync_service._retried_if_rolled_back(flaky)
    assert flaky.calls == 1

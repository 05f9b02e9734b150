"""Checks before anything is started, each failing with what to run to fix it."""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass

__all__ = [
    "PreflightError",
    "ServiceUrls",
    "check_seeded",
    "check_wrk",
    "resolve_services",
    "service_pids",
]

WRK_INSTALL = (
    "install wrk: `sudo apt-get install -y wrk` (Debian/Ubuntu), `brew install wrk` "
    "(macOS), or build https://github.com/wg/wrk; or point --wrk/LAB_WRK at it"
)


class PreflightError(RuntimeError):
    """The run cannot start; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    database_url: str
    redis_url: str


def check_wrk(wrk: str | None, *, pin: bool) -> None:
    if wrk is None:
        raise PreflightError(f"wrk not found: {WRK_INSTALL}")
    if pin and shutil.which("taskset") is None:
        raise PreflightError(
            "taskset not found (needed to pin the server and wrk to their "
            "CPUs): `sudo apt-get install -y util-linux`, or run with --no-pin"
        )


def resolve_services() -> ServiceUrls:
    """The URLs ``lab serve`` would use (``lab.services.current_urls``)."""
    from lab import services

    try:
        urls = services.current_urls()
    except services.ServicesError as exc:
        raise PreflightError(
            f"services unreachable: {exc} (or set LAB_DATABASE_URL and "
            "LAB_REDIS_URL to reachable servers)"
        ) from None
    return ServiceUrls(urls.database_url, urls.redis_url)


async def _seed_counts(url: str) -> tuple[int, int, int]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        items = await conn.fetchval("SELECT count(*) FROM items WHERE id BETWEEN 1 AND 100000")
        world = await conn.fetchval("SELECT count(*) FROM world")
        fortune = await conn.fetchval("SELECT count(*) FROM fortune")
        return int(items), int(world), int(fortune)
    finally:
        await conn.close()


def check_seeded(database_url: str) -> None:
    """The seed rows of SPEC §1 are all there (counts only; ``lab db init`` checks more)."""
    hint = "seed it with `lab db init`"
    try:
        items, world, fortune = asyncio.run(_seed_counts(database_url))
    except Exception as exc:
        name = type(exc).__name__
        if "UndefinedTable" in name:
            raise PreflightError(f"the database is not initialised: {hint}") from None
        raise PreflightError(f"cannot read the seed data ({name}: {exc}): {hint}") from None
    if (items, world, fortune) != (100_000, 10_000, 12):
        raise PreflightError(
            f"the data is not seeded (items {items}/100000, world {world}/10000,"
            f" fortune {fortune}/12): {hint}"
        )


async def _postmaster_pid(url: str) -> int:
    import asyncpg
    import psutil

    conn = await asyncpg.connect(url, timeout=10)
    try:
        backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        # every backend is a child of the postmaster; asked while the backend still lives
        return int(psutil.Process(backend).ppid())
    finally:
        await conn.close()


def _redis_pid(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def service_pids(urls: ServiceUrls) -> dict[str, int | None]:
    """The process of each service as the service itself reports it: PostgreSQL's
    postmaster (the parent of the backend that answers), Redis's ``process_id``. Unlike the
    owner of a listening port, this shows without root. A service that cannot be asked maps
    to None; only a caller that knows the service runs here may read the pid's CPU."""
    pids: dict[str, int | None] = {}
    try:
        pids["postgresql"] = asyncio.run(_postmaster_pid(urls.database_url))
    except Exception:
        pids["postgresql"] = None
    try:
        pids["redis"] = _redis_pid(urls.redis_url)
    except Exception:
        pids["redis"] = None
    return pids


def warn(message: str) -> None:
    print(f"lab bench: warning: {message}", file=sys.stderr)

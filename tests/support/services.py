"""PostgreSQL and Redis for the tests: the configured ones, or embedded ones the tests own.

``LAB_TEST_SERVICES`` chooses: ``urls`` uses ``LAB_DATABASE_URL``/``LAB_REDIS_URL`` (or what
``lab services up`` left running); ``embedded`` starts a private PostgreSQL and Redis for the
session. Unset: ``urls`` when both variables are set, else whatever ``lab.services`` knows
of if it is reachable, else ``embedded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .processes import free_port

__all__ = ["PrivateServices", "Services", "init_db", "reachable", "resolve_mode"]


@dataclass(frozen=True)
class Services:
    database_url: str
    redis_url: str


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    default = 5432 if parts.scheme.startswith("postgres") else 6379
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default), timeout=timeout_s
        ):
            return True
    except OSError:
        return False


def resolve_mode() -> tuple[str, Services | None]:
    """(``urls`` with the URLs to use) or (``embedded``, None)."""
    mode = os.environ.get("LAB_TEST_SERVICES", "").strip().lower()
    if mode not in {"", "urls", "embedded"}:
        raise ValueError(f"LAB_TEST_SERVICES must be 'urls' or 'embedded', got {mode!r}")
    if mode == "embedded":
        return "embedded", None
    db, redis = os.environ.get("LAB_DATABASE_URL"), os.environ.get("LAB_REDIS_URL")
    if db and redis:
        return "urls", Services(db, redis)
    urls = None
    with contextlib.suppress(Exception):
        from lab import services

        found = services.current_urls()
        urls = Services(found.database_url, found.redis_url)
    if mode == "urls":
        if urls is None:
            raise RuntimeError(
                "LAB_TEST_SERVICES=urls but no LAB_DATABASE_URL/LAB_REDIS_URL is "
                "set and `lab services` knows of none"
            )
        return "urls", urls
    if urls is not None and reachable(urls.database_url) and reachable(urls.redis_url):
        return "urls", urls
    return "embedded", None


def init_db(database_url: str) -> None:
    from lab import seed

    result: Any = seed.init_db(database_url)
    if inspect.isawaitable(result):
        asyncio.run(result)  # type: ignore[arg-type]


class PrivateServices:
    """An embedded PostgreSQL and Redis on fixed loopback ports (so a restart keeps the URL),
    started, seeded, stopped and restarted by the tests themselves.

    Their data lives in a fresh folder under the system temp dir that every user may enter:
    run as root, the lab runs PostgreSQL as an unprivileged user, who cannot enter pytest's
    own (mode 0700) temp folders. The folder is removed by :meth:`stop`.
    """

    def __init__(self, name: str = "lab-test-services") -> None:
        from lab.services import EmbeddedPostgres, EmbeddedRedis

        root = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        root.chmod(0o755)
        self.root = root
        self.pg_port, self.redis_port = free_port(), free_port()
        self.postgres = EmbeddedPostgres(root / "postgres", port=self.pg_port)
        self.redis = EmbeddedRedis(root / "redis", port=self.redis_port)

    @property
    def urls(self) -> Services:
        return Services(self.postgres.url, self.redis.url)

    def start(self) -> PrivateServices:
        self.start_postgres()
        self.start_redis()
        init_db(self.postgres.url)
        return self

    def __enter__(self) -> PrivateServices:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start_postgres(self) -> None:
        if not self.postgres.running:
            self.postgres.start()
        _wait_tcp(self.postgres.url)

    def start_redis(self) -> None:
        if not self.redis.running:
            self.redis.start()
        _wait_tcp(self.redis.url)

    def stop_postgres(self) -> None:
        if self.postgres.running:
            self.postgres.stop()
        _wait_closed(self.postgres.url)

    def stop_redis(self) -> None:
        if self.redis.running:
            self.redis.stop()
        _wait_closed(self.redis.url)

    def stop(self) -> None:
        errors = []
        for stop in (self.redis.stop, self.postgres.stop):
            try:
                stop()
            except Exception as exc:  # stop both even if one fails
                errors.append(exc)
        if errors:
            raise errors[0]
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_tcp(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not reachable(url, 0.5):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not accepting connections after {timeout_s} s")
        time.sleep(0.05)


def _wait_closed(url: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while reachable(url, 0.5):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} still accepting connections {timeout_s} s after stop")
        time.sleep(0.05)

"""Configuration from ``LAB_*`` environment variables, read once per process.

Every knob the contract names lives here, so adapters and the harness never read the
environment themselves. Values are validated at start-up: a bad setting stops the server
with a clear message instead of failing on the first request.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = [
    "SWITCHES",
    "RateLimit",
    "Settings",
    "SettingsError",
    "check_framework",
    "get_settings",
    "switch_from_env",
]

# The experiment switches (SPEC §6): variable → allowed values, the first being the default
# (today's behaviour). Each changes how one technique is done, never the routes served.
SWITCHES: dict[str, tuple[str, ...]] = {
    "LAB_JSON_CODEC": ("orjson", "stdlib"),
    "LAB_DB_POOL": ("pool", "connect"),
    "LAB_DB_RESET": ("query", "rollback"),
    "LAB_CACHE": ("redis", "none", "local"),
    "LAB_HTTP_CACHE": ("on", "off"),
    "LAB_BATCH_QUERY": ("batched", "n_plus_one"),
    "LAB_PAGINATION": ("keyset", "offset"),
    "LAB_STREAMING": ("on", "off"),
    "LAB_UPSTREAM_CLIENT": ("async", "blocking"),
    "LAB_HANDLERS": ("async", "sync"),
    "LAB_LIMITER": ("redis", "off"),
}
# Switch values only some frameworks implement; any other framework refuses to start with
# them (a switch silently ignored would make an experiment measure nothing).
_ONLY_FOR: dict[tuple[str, str], frozenset[str]] = {
    ("LAB_UPSTREAM_CLIENT", "blocking"): frozenset({"fastapi", "litestar", "aiohttp"}),
    ("LAB_HANDLERS", "sync"): frozenset({"fastapi"}),
    # asyncpg's pool only: psycopg_pool (Flask) already does no more than roll back
    ("LAB_DB_RESET", "rollback"): frozenset({"fastapi", "litestar", "aiohttp"}),
    ("LAB_MIDDLEWARE", "basehttp"): frozenset({"fastapi"}),  # Starlette's style
}

# LAB_MAX_INFLIGHT (a number, so not in SWITCHES): the async adapters only. A WSGI worker's
# in-flight requests are bounded by its server's threads already, with the queue in front of
# the app, where no handler can shed it (common/admission.py).
_ADMITTING = frozenset({"fastapi", "litestar", "aiohttp"})


class SettingsError(ValueError):
    """A ``LAB_*`` variable holds a value the lab cannot use."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    window_s: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*s?\s*", text)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            raise SettingsError(f"LAB_RATE_LIMIT must look like '100/60s', got {text!r}")
        return cls(int(match[1]), int(match[2]))


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    redis_url: str
    upstream_url: str
    upstream_timeout_ms: int = 1000
    cache_ttl_s: int = 60
    idempotency_ttl_s: int = 86_400  # common/idempotency.py
    rate_limit: RateLimit = RateLimit(100, 60)
    trusted_proxies: tuple[str, ...] = ()
    limiter_fail_closed: bool = False
    db_pool_size: int = 10
    db_timeout_s: float = 3.0
    redis_pool_size: int = 1000
    cpu_executor: str = "thread"  # thread | process | inline
    stream_batch: int = 500
    write_timeout_s: float = 30.0  # common/stall.py
    compression_min_size: int = 1000
    gzip_level: int = 6
    br_level: int = 4
    zstd_level: int = 3
    # Experiment switches (SPEC §6); the defaults are the contract's own behaviour.
    json_codec: str = "orjson"  # orjson | stdlib
    db_pool: str = "pool"  # pool | connect
    db_reset: str = "query"  # query | rollback: what asyncpg's pool does on release
    cache: str = "redis"  # redis | none | local
    local_cache_size: int = 10_000
    http_cache: bool = True
    batch_query: str = "batched"  # batched | n_plus_one
    pagination: str = "keyset"  # keyset | offset
    streaming: bool = True
    upstream_client: str = "async"  # async | blocking
    handlers: str = "async"  # async | sync
    limiter: str = "redis"  # redis | off
    max_inflight: int | None = None  # LAB_MAX_INFLIGHT=off|n: shed past n requests per worker
    max_tasks: int = 1000  # LAB_MAX_TASKS: background tasks queued or running per worker
    # Middleware experiment switches (SPEC §6): defaults are the production stack.
    timing: bool = True  # LAB_TIMING=on|off: the Server-Timing header
    access_log: bool = False  # LAB_ACCESS_LOG=off|on: one JSON line per request on stderr
    middleware: str = "pure"  # LAB_MIDDLEWARE=pure|basehttp (basehttp: FastAPI only)

    def redis_pool(self) -> dict[str, Any]:
        """The Redis pool both twins open (redis-py's ``BlockingConnectionPool``, sync or async).

        Short socket timeouts: a dead Redis must degrade the request (BYPASS, fail-open)
        quickly rather than hold it (SPEC §3.6, §3.7); the twins add one immediate retry on a
        connection error, because after Redis restarts every pooled connection is dead and
        fails once on its next use (tests/reliability/test_faults_under_load.py).

        A pool larger than any concurrency the lab drives one worker at (256 connections), so
        that load alone never queues a request for Redis: redis-py's default pool raises "Too
        many connections" for the 101st command in flight, and a pool of 100 that waits a
        second for a free connection still timed out 0.1-0.3 % of FastAPI's requests at 256
        connections on one core; the cache and the limiter take either for Redis being down.
        Connections are opened as needed, so a quiet worker holds few. Past the size a request
        waits up to a second (the conformance suite's ``LAB_REDIS_POOL_SIZE=1`` exercises it)."""
        return {
            "max_connections": self.redis_pool_size,
            "timeout": 1.0,
            "socket_timeout": 0.5,
            "socket_connect_timeout": 0.5,
            "health_check_interval": 0,
        }

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)

        def num(name: str, default: int, lo: int, hi: int) -> int:
            raw = e.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
            if not lo <= value <= hi:
                raise SettingsError(f"{name} must be in {lo}..{hi}, got {value}")
            return value

        def switch(name: str) -> str:
            return switch_from_env(name, e)

        executor = e.get("LAB_CPU_EXECUTOR", "thread")
        if executor not in {"thread", "process", "inline"}:
            raise SettingsError(f"LAB_CPU_EXECUTOR must be thread|process|inline, got {executor!r}")
        fail = e.get("LAB_LIMITER_FAIL", "open")
        if fail not in {"open", "closed"}:
            raise SettingsError(f"LAB_LIMITER_FAIL must be open|closed, got {fail!r}")
        proxies = tuple(p.strip() for p in e.get("LAB_TRUSTED_PROXIES", "").split(",") if p.strip())
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise SettingsError(
                    f"LAB_TRUSTED_PROXIES entries must be IP addresses or CIDRs, got {proxy!r}"
                ) from None
        handlers, upstream_client = switch("LAB_HANDLERS"), switch("LAB_UPSTREAM_CLIENT")
        if handlers == "sync" and upstream_client == "blocking":
            raise SettingsError(
                "LAB_HANDLERS=sync and LAB_UPSTREAM_CLIENT=blocking both change GET /aggregate;"
                " measure one at a time"
            )

        inflight = e.get("LAB_MAX_INFLIGHT") or "off"
        if inflight != "off" and not inflight.isdigit():
            raise SettingsError(f"LAB_MAX_INFLIGHT must be off or a count, got {inflight!r}")
        max_inflight = None if inflight == "off" else num("LAB_MAX_INFLIGHT", 0, 1, 100_000)

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            value = e.get(name) or default
            if value not in allowed:
                raise SettingsError(f"{name} must be {'|'.join(allowed)}, got {value!r}")
            return value

        return cls(
            database_url=e.get("LAB_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
            redis_url=e.get("LAB_REDIS_URL", "redis://127.0.0.1:6379/0"),
            upstream_url=e.get("LAB_UPSTREAM_URL", "http://127.0.0.1:8081").rstrip("/"),
            upstream_timeout_ms=num("LAB_UPSTREAM_TIMEOUT_MS", 1000, 1, 600_000),
            cache_ttl_s=num("LAB_CACHE_TTL", 60, 1, 86_400 * 30),
            idempotency_ttl_s=num("LAB_IDEMPOTENCY_TTL", 86_400, 1, 86_400 * 30),
            rate_limit=RateLimit.parse(e.get("LAB_RATE_LIMIT", "100/60s")),
            trusted_proxies=proxies,
            limiter_fail_closed=fail == "closed",
            db_pool_size=num("LAB_DB_POOL_SIZE", 10, 1, 1000),
            db_timeout_s=num("LAB_DB_TIMEOUT_MS", 3000, 10, 600_000) / 1000,
            redis_pool_size=num("LAB_REDIS_POOL_SIZE", 1000, 1, 10_000),
            cpu_executor=executor,
            stream_batch=num("LAB_STREAM_BATCH", 500, 1, 100_000),
            write_timeout_s=num("LAB_WRITE_TIMEOUT_MS", 30_000, 100, 600_000) / 1000,
            compression_min_size=num("LAB_COMPRESSION_MIN_SIZE", 1000, 0, 1 << 30),
            gzip_level=num("LAB_GZIP_LEVEL", 6, 1, 9),
            br_level=num("LAB_BR_LEVEL", 4, 0, 11),
            zstd_level=num("LAB_ZSTD_LEVEL", 3, 1, 22),
            json_codec=switch("LAB_JSON_CODEC"),
            db_pool=switch("LAB_DB_POOL"),
            db_reset=switch("LAB_DB_RESET"),
            cache=switch("LAB_CACHE"),
            local_cache_size=num("LAB_LOCAL_CACHE_SIZE", 10_000, 1, 10_000_000),
            http_cache=switch("LAB_HTTP_CACHE") == "on",
            batch_query=switch("LAB_BATCH_QUERY"),
            pagination=switch("LAB_PAGINATION"),
            streaming=switch("LAB_STREAMING") == "on",
            upstream_client=upstream_client,
            handlers=handlers,
            limiter=switch("LAB_LIMITER"),
            max_inflight=max_inflight,
            max_tasks=num("LAB_MAX_TASKS", 1000, 1, 1_000_000),
            timing=choice("LAB_TIMING", "on", ("on", "off")) == "on",
            access_log=choice("LAB_ACCESS_LOG", "off", ("off", "on")) == "on",
            middleware=choice("LAB_MIDDLEWARE", "pure", ("pure", "basehttp")),
        )


def switch_from_env(name: str, env: Mapping[str, str] | None = None) -> str:
    """One switch's value (default when unset or empty), validated."""
    allowed = SWITCHES[name]
    value = (os.environ if env is None else env).get(name) or allowed[0]
    if value not in allowed:
        raise SettingsError(f"{name} must be {'|'.join(allowed)}, got {value!r}")
    return value


def check_framework(settings: Settings, framework: str) -> Settings:
    """Refuse a switch value ``framework`` does not implement (SPEC §6); adapters call this
    at start-up, so the server stops with the reason instead of ignoring the switch."""
    chosen = {
        "LAB_UPSTREAM_CLIENT": settings.upstream_client,
        "LAB_HANDLERS": settings.handlers,
        "LAB_MIDDLEWARE": settings.middleware,
        "LAB_DB_RESET": settings.db_reset,
    }
    for (name, value), frameworks in _ONLY_FOR.items():
        if chosen[name] == value and framework not in frameworks:
            raise SettingsError(
                f"{name}={value} applies only to {', '.join(sorted(frameworks))}, not {framework}"
            )
    if settings.max_inflight is not None and framework not in _ADMITTING:
        raise SettingsError(
            f"LAB_MAX_INFLIGHT={settings.max_inflight} applies only to "
            f"{', '.join(sorted(_ADMITTING))}, not {framework}"
        )
    return settings


@cache
def get_settings() -> Settings:
    """The process's settings; cached because the environment does not change after start."""
    return Settings.from_env()

"""Running the lab's own processes for the tests: a pair under ``lab serve`` in a given
configuration, and the upstream service of SPEC §3.12."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.settings import Settings
from lab import matrix

from .client import LabClient
from .processes import ManagedProcess, ProcessError, free_port, serve_argv, upstream_argv
from .services import Services

__all__ = [
    "CONTROLLED",
    "HOST",
    "Server",
    "ServerConfig",
    "ServersByConfig",
    "running_pair",
    "running_upstream",
]

HOST = "127.0.0.1"

# Variables the suite sets itself per configuration; inherited values would change what the
# tests assert (defaults), so they are not passed through. Others (LAB_CPU_EXECUTOR, levels,
# pool sizes) are, so the suite can run under an experiment's settings.
CONTROLLED = frozenset(
    {
        "LAB_DATABASE_URL",
        "LAB_REDIS_URL",
        "LAB_UPSTREAM_URL",
        "LAB_UPSTREAM_TIMEOUT_MS",
        "LAB_CACHE_TTL",
        "LAB_RATE_LIMIT",
        "LAB_TRUSTED_PROXIES",
        "LAB_LIMITER_FAIL",
        "LAB_COMPRESSION_MIN_SIZE",
        "LAB_DB_TIMEOUT_MS",
        "LAB_TEST_SERVICES",
        "LAB_TEST_PAIRS",
        # Experiment switches that change what the contract's tests observe (SPEC §6), or
        # that some frameworks refuse; tests/conformance/test_switches.py sets them itself.
        # LAB_JSON_CODEC, LAB_DB_POOL and LAB_BATCH_QUERY promise the default bytes, so they
        # pass through: the whole suite can run under them.
        "LAB_CACHE",
        "LAB_LOCAL_CACHE_SIZE",
        "LAB_HTTP_CACHE",
        "LAB_PAGINATION",
        "LAB_STREAMING",
        "LAB_UPSTREAM_CLIENT",
        "LAB_HANDLERS",
        "LAB_DB_RESET",
        "LAB_LIMITER",
    }
)


@dataclass(frozen=True)
class ServerConfig:
    """One way of running a pair: environment overrides and worker count."""

    name: str
    env: Mapping[str, str] = field(default_factory=dict)
    workers: int = 1


@dataclass
class Server:
    pair: matrix.Pair
    config: ServerConfig
    url: str
    process: ManagedProcess

    def client(self, **kwargs: Any) -> LabClient:
        return LabClient(self.url, **kwargs)


class ServersByConfig:
    """One pair's servers for a module, one per configuration (by name), each started on its
    first use and all stopped together; ``default`` (the session's server) answers for its
    own configuration."""

    def __init__(
        self,
        launch: Callable[[matrix.Pair, ServerConfig], contextlib.AbstractContextManager[Server]],
        pair: matrix.Pair,
        default: Server | None = None,
    ) -> None:
        self._launch, self._pair = launch, pair
        self._servers: dict[str, Server] = {}
        if default is not None:
            self._servers[default.config.name] = default
        self._stack = contextlib.ExitStack()

    def get(self, config: ServerConfig) -> Server:
        if config.name not in self._servers:
            server = self._stack.enter_context(self._launch(self._pair, config))
            self._servers[config.name] = server
        return self._servers[config.name]

    def close(self) -> None:
        self._stack.close()


# Connections each server worker's pool opens at start, unless the run or the configuration
# sets its own: the parallel workers run up to four pairs at once against one PostgreSQL, each
# pair with up to seven server processes alive (the default, two-worker and switched servers
# beside a module's own), and the contract's ten each overran a stock max_connections of 100.
# The conformance tests send a pair's database requests one at a time; the reliability
# suite's load, on private services, sets the contract's own size.
TEST_DB_POOL_SIZE = "2"


def contract_db_pool() -> dict[str, str]:
    """``LAB_DB_POOL_SIZE`` as the run sets it, else the contract's default: for a
    configuration under load on private services."""
    default = next(f.default for f in dataclasses.fields(Settings) if f.name == "db_pool_size")
    return {"LAB_DB_POOL_SIZE": os.environ.get("LAB_DB_POOL_SIZE", str(default))}


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env.setdefault("LAB_DB_POOL_SIZE", TEST_DB_POOL_SIZE)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def running_upstream(log_dir: Path, *, fail_every: int = 0) -> Iterator[str]:
    """``lab upstream`` on a free port; yields its base URL."""
    port = free_port(HOST)
    name = f"upstream-{port}" + (f"-fail-every-{fail_every}" if fail_every else "")
    proc = ManagedProcess(
        name,
        upstream_argv(host=HOST, port=port, fail_every=fail_every),
        base_env(),
        matrix.REPO_ROOT,
        log_dir,
        f"http://{HOST}:{port}/health",
    ).start()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        proc.stop()


@contextlib.contextmanager
def running_pair(
    pair: matrix.Pair, config: ServerConfig, *, services: Services, upstream_url: str, log_dir: Path
) -> Iterator[Server]:
    """The pair under ``lab serve`` until the block ends; then it must stop cleanly (§5)."""
    port = free_port(HOST)
    env = (
        base_env()
        | {
            "LAB_DATABASE_URL": services.database_url,
            "LAB_REDIS_URL": services.redis_url,
            "LAB_UPSTREAM_URL": upstream_url,
        }
        | dict(config.env)
    )
    argv = serve_argv(
        pair.framework.name, pair.server.name, host=HOST, port=port, workers=config.workers
    )
    url = f"http://{HOST}:{port}"
    proc = ManagedProcess(
        f"{pair.id}-{config.name}-{port}", argv, env, matrix.REPO_ROOT, log_dir, f"{url}/health"
    ).start()
    died = False
    try:
        yield Server(pair, config, url, proc)
        died = not proc.running() and not proc.stop_requested
    finally:
        proc.stop(check=not died)
    if died:
        raise ProcessError(f"{proc.name} died while its tests ran\n{proc.log_tail()}")

"""The manifest: everything a reader needs to judge or reproduce a run's numbers.

CPU model, cores, kernel, Python, every installed package's version, PostgreSQL, Redis and
wrk versions, git commit and dirty flag, pinning, date and command line. Secrets are never
recorded: passwords in URLs are replaced by ``***``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import subprocess
import sys
import time
import timeit
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from lab.matrix import REPO_ROOT

from . import preflight
from .method import PLAN_ORDER

__all__ = [
    "Standalone",
    "collect",
    "environment",
    "git_info",
    "now_iso",
    "plan_order",
    "redact_url",
    "session",
    "session_orders",
    "standalone",
]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> dict[str, Any]:
    uname = platform.uname()
    return {
        "cpu_model": cpu_model(),
        "cpus_logical": psutil.cpu_count(logical=True),
        "cpus_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "memory_bytes": psutil.virtual_memory().total,
        "system": uname.system,
        "kernel": uname.release,
        "kernel_version": uname.version,
        "arch": uname.machine,
        "virtualization": _virtualization(),
        # Which machine and which boot: sessions of one run may meet different ones.
        "hostname": uname.node,
        "boot_id": _boot_id(),
    }


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _virtualization() -> str | None:
    try:
        out = subprocess.run(
            ["systemd-detect-virt"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def python() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "build": list(platform.python_build()),
        "compiler": platform.python_compiler(),
    }


def packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name.lower()] = dist.version
    return dict(sorted(found.items()))


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_info(root: Path = REPO_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        out = _git(root, *args)
        return out.stdout.strip() if out is not None and out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=normal")
    return {
        "commit": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": None if status is None else bool(status),
    }


# The commit whose plan first put each pair next to its floors (see method.PLAN_ORDER).
NEIGHBOUR_ORDER_SINCE = "957235c5f5036ab709e576b05586cc2d6b48b9a1"
ORDER_BEFORE = "pairs-then-floors"


def plan_order(
    method: dict[str, Any],
    commit: str | None,
    root: Path = REPO_ROOT,
    since: str = NEIGHBOUR_ORDER_SINCE,
) -> str:
    """How a session ordered its cells: as its method recorded it, else (manifests written
    before the field) from its commit's history: :data:`~bench.method.PLAN_ORDER` at or
    after ``since``, ``pairs-then-floors`` before it, ``unknown`` when git cannot tell (no
    history, a commit that is not in it)."""
    if method.get("order"):
        return str(method["order"])
    if not commit:
        return "unknown"
    out = _git(root, "merge-base", "--is-ancestor", since, commit)
    if out is None or out.returncode not in (0, 1):
        return "unknown"
    return PLAN_ORDER if out.returncode == 0 else ORDER_BEFORE


def session_orders(
    data: dict[str, Any], root: Path = REPO_ROOT, since: str = NEIGHBOUR_ORDER_SINCE
) -> list[str]:
    """:func:`plan_order` of each session of a run, the first being the manifest's own."""
    sessions = list(data.get("sessions") or [{}])
    orders = []
    for index, session in enumerate(sessions):
        method = (data if index == 0 else session).get("method") or {}
        commit = (session.get("git") or data.get("git") or {}).get("commit")
        orders.append(plan_order(method, commit, root, since))
    return orders


async def _postgres_version(url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def service_versions(database_url: str | None, redis_url: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "postgresql": None,
        "redis": None,
        "database_url": database_url and redact_url(database_url),
        "redis_url": redis_url and redact_url(redis_url),
    }
    if database_url:
        try:
            result["postgresql"] = asyncio.run(_postgres_version(database_url))
        except Exception as exc:  # a version is informative, not required
            result["postgresql_error"] = repr(exc)
    if redis_url:
        try:
            import redis

            client = redis.Redis.from_url(redis_url, socket_timeout=5)
            try:
                info = client.info("server")
            finally:
                client.close()
            result["redis"] = info.get("redis_version") or info.get("valkey_version")
            if "valkey_version" in info:
                result["redis_flavour"] = "valkey " + str(info["valkey_version"])
        except Exception as exc:
            result["redis_error"] = repr(exc)
    return result


# Variables the servers the harness starts read as settings: the lab's own, and the ones that
# tune a server or the interpreter without showing in its argv (GRANIAN_RUNTIME_MODE,
# GUNICORN_CMD_ARGS, PYTHONASYNCIODEBUG, ...). A run made with any of them set says so. Only
# the interpreter's variables that change how fast it runs: PYTHONUNBUFFERED and the like,
# which a shell may set for every command, would make runs differ in name only.
RECORDED_ENV_PREFIXES = ("LAB_", "GRANIAN_", "UVICORN_", "GUNICORN_")
RECORDED_ENV_NAMES = frozenset(
    {
        "WEB_CONCURRENCY",
        "PYTHONASYNCIODEBUG",
        "PYTHONDEVMODE",
        "PYTHONHASHSEED",
        "PYTHONMALLOC",
        "PYTHONNODEBUGRANGES",
        "PYTHONOPTIMIZE",
        "PYTHONPERFSUPPORT",
        "PYTHONTRACEMALLOC",
        "PYTHONWARNINGS",
        "PYTHON_GIL",
        "PYTHON_JIT",
    }
)


# Where the services are, not how a server runs: a resumed run may meet them elsewhere.
SERVICE_URL_VARS = frozenset({"LAB_DATABASE_URL", "LAB_REDIS_URL", "LAB_UPSTREAM_URL"})


def is_recorded(name: str) -> bool:
    return name.startswith(RECORDED_ENV_PREFIXES) or name in RECORDED_ENV_NAMES


def recorded_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if is_recorded(k)}
    return {k: redact_url(v) if "://" in v else v for k, v in sorted(env.items())}


def server_settings(env: dict[str, str]) -> dict[str, str]:
    """A recorded environment without the service URLs: what the servers were tuned with.
    Filtered again, as records of 2026-12-06 hold every ``PYTHON*`` variable."""
    return {k: v for k, v in env.items() if is_recorded(k) and k not in SERVICE_URL_VARS}


def where(database_url: str | None, redis_url: str | None) -> dict[str, Any]:
    """The machine, interpreter and services a measurement met (a resumed run's session
    records these again: it may run on another machine)."""
    return {
        "machine": machine(),
        "python": python(),
        "services": service_versions(database_url, redis_url),
    }


def environment(database_url: str | None, redis_url: str | None) -> dict[str, Any]:
    """Where a measurement ran: the part of a manifest every command's results carry."""
    return {
        "git": git_info(),
        **where(database_url, redis_url),
        "packages": packages(),
        "env": recorded_env(),
    }


def changed(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str | None]]:
    """Packages whose version differs between two sessions: name -> [before, after]."""
    names = sorted(set(before) | set(after))
    return {n: [before.get(n), after.get(n)] for n in names if before.get(n) != after.get(n)}


@dataclass(frozen=True, slots=True)
class Standalone:
    """What a one-off measurement command (``lab memory``, ``lab instructions``) starts from."""

    env: dict[str, str]  # LAB_DATABASE_URL and LAB_REDIS_URL for the servers it starts
    out: Path  # its results folder, ``raw/`` made
    header: dict[str, Any]  # the manifest part of its JSON


def standalone(kind: str, out: str | None, method: dict[str, Any]) -> Standalone:
    """Resolve and check the services, name the run, make its folder, describe where it ran."""
    urls = preflight.resolve_services()
    preflight.check_seeded(urls.database_url)
    run_id = time.strftime(f"%Y%m%dT%H%M%SZ-{kind}", time.gmtime())
    folder = Path(out) if out else REPO_ROOT / "results" / run_id
    return standalone_in(kind, run_id, folder, urls, method)


def standalone_in(
    kind: str, run_id: str, folder: Path, urls: preflight.ServiceUrls, method: dict[str, Any]
) -> Standalone:
    """A measurement's header and folder (its ``raw/`` made), run ``run_id`` of ``kind``."""
    (folder / "raw").mkdir(parents=True, exist_ok=True)
    header = {
        "schema": f"lab.{kind}/1",
        "run_id": run_id,
        "created_at": now_iso(),
        "command": ["lab", *sys.argv[1:]],
        **environment(urls.database_url, urls.redis_url),
        "method": method,
    }
    env = {"LAB_DATABASE_URL": urls.database_url, "LAB_REDIS_URL": urls.redis_url}
    return Standalone(env, folder, header)


def app_work_cost(repeats: int = 5, calls: int = 2_000) -> dict[str, Any]:
    """What the floors' control work (``impls.floors.app_work``, served as ``/json-work``)
    costs in a warm loop in this process, on the harness's core: the reference the servers'
    charge for it is read against (docs/performance.md)."""
    from impls.floors import WORK_LOOPS, app_work

    best = min(
        timeit.repeat(app_work, number=calls, repeat=repeats)  # the minimum: least disturbed
    )
    return {
        "loops": WORK_LOOPS,
        "us": round(best / calls * 1e6, 3),
        "how": f"best of {repeats} x {calls:,} calls in the harness's process",
    }


def session(argv: list[str], idle: dict[str, Any] | None = None) -> dict[str, Any]:
    """One session of a run; ``idle`` (a resumed session's): whether its CPUs were held
    awake (bench/idle.py)."""
    return {
        "started_at": now_iso(),
        "command": argv,
        "cwd": os.getcwd(),
        "git": git_info(),
        "pid": os.getpid(),
        "env": recorded_env(),
        **({"idle": idle} if idle is not None else {}),
    }


def collect(
    *,
    run_id: str,
    argv: list[str],
    method: dict[str, Any],
    pinning: dict[str, Any],
    wrk: dict[str, Any],
    services: dict[str, Any],
    selection: dict[str, Any],
    idle: dict[str, Any] | None = None,
    loadgen: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "created_at": now_iso(),
        "command": argv,
        "git": git_info(),
        "machine": machine(),
        "python": python(),
        "packages": packages(),
        "services": services,
        "wrk": wrk,
        "loadgen": loadgen,  # the fixed-rate generator, in a --rate run
        "pinning": pinning,
        "method": method,
        "selection": selection,
        "env": recorded_env(),
        "idle": idle,
        "controls": {"app_work": app_work_cost()},
        "sessions": [session(argv)],  # its idle, machine and services: the manifest's own
    }

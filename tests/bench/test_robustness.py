"""Harness robustness with real wrk and real servers (issue 7): a server killed with SIGKILL
mid-cell, Ctrl-C mid-run, and resuming both. ``lab bench`` runs as a child process in a
session of its own, as from a terminal; every process it starts is tracked by PID while it
runs, so "no orphan" is checked on exactly those processes.

Floor targets (``raw_asgi`` on uvicorn and hypercorn) need no PostgreSQL or Redis; cells last
one second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from bench import load, preflight, runner
from bench.results import RunDir
from lab import matrix, procs

STEP_TIMEOUT_S = 120.0  # each wait below is bounded by this


@pytest.fixture(scope="module", autouse=True)
def _wrk() -> None:
    assert load.find_wrk() is not None, f"wrk not found: {preflight.WRK_INSTALL}"


def _argv(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lab.cli",
        "bench",
        "--framework",
        "raw_asgi",
        "--server",
        "uvicorn",
        "--server",
        "hypercorn",
        "--scenario",
        "json",
        "--repeat",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--concurrency",
        "8",
        "--no-pin",
        "--out",
        str(out),
    ]


def _ctrl_c_as_a_terminal_sends_it() -> None:
    """In the child: SIGINT back to its default. A job started in the background by a
    non-interactive shell inherits SIGINT ignored (POSIX), and Python then installs no
    KeyboardInterrupt handler; the Ctrl-C tests must not depend on how the suite was run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Bench:
    """``lab bench`` in its own session; remembers every descendant it has seen."""

    def __init__(self, out: Path, log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            _argv(out),
            cwd=matrix.REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ctrl_c_as_a_terminal_sends_it,
        )
        self.seen: dict[int, psutil.Process] = {}

    def descendants(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for p in found:
            self.seen.setdefault(p.pid, p)
        return found

    def wait_for(self, what: str, found: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            self.descendants()
            if (value := found()) is not None:
                return value
            assert self.proc.poll() is None, f"lab bench exited before {what}"
            time.sleep(0.02)
        raise AssertionError(f"{what}: not within {STEP_TIMEOUT_S} s")

    def wrk(self) -> tuple[psutil.Process, str] | None:
        """A wrk measuring a cell, and that cell (wrk's output file is
        ``raw/<cell>.wrk.json``). lab bench also runs ``wrk -v`` for the manifest, which
        writes no file: caught while it lived (seen in CI, under load), it is not the one."""
        for p in self.descendants():
            try:
                if p.name() == "wrk" and (out := p.environ().get("LAB_WRK_OUT")):
                    return p, Path(out).name.split(".", 1)[0]
            except psutil.Error:
                continue
        return None

    def finish(self) -> int:
        try:
            code = self.proc.wait(timeout=STEP_TIMEOUT_S)
        finally:
            self.log.close()
        return code

    def orphans(self) -> list[str]:
        """Processes it started that are still alive after it exited (bounded grace), and
        anything left in its session."""
        deadline = time.monotonic() + 5
        while True:
            left = []
            for p in self.seen.values():
                try:
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                        left.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
                except psutil.Error:
                    continue
            for p in psutil.process_iter():
                try:
                    if os.getsid(p.pid) == self.proc.pid and p.status() != psutil.STATUS_ZOMBIE:
                        left.append(f"{p.pid} (in its session)")
                except (OSError, psutil.Error):
                    continue
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)


def _cells(out: Path) -> dict[str, dict[str, Any]]:
    """Every cell file, parsed: a file that is not valid JSON fails here."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))}


def _assert_intact(out: Path, planned: int) -> dict[str, dict[str, Any]]:
    cells = _cells(out)
    assert len(cells) <= planned
    assert {c["cell_id"] for c in cells.values()} == set(cells), "a cell file names another cell"
    assert not list(out.glob("**/*.tmp")), "a half-written file was left"
    summary = json.loads(RunDir(out).summary.read_text())
    by_outcome = {k: sum(c["outcome"] == k for c in cells.values()) for k in summary["cells"]}
    assert summary["cells"] == by_outcome, (summary["cells"], by_outcome)
    return cells


def test_server_killed_mid_cell_is_an_error_and_the_run_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "run"
    bench = Bench(out, tmp_path / "bench.log")
    try:
        wrk, killed_cell = bench.wait_for("the first measured cell", bench.wrk)
        server = next(
            p
            for p in bench.descendants()
            if p.pid != wrk.pid and "--port" in " ".join(p.cmdline()) and p.ppid() == bench.proc.pid
        )
        server.send_signal(signal.SIGKILL)
        code = bench.finish()
    finally:
        if bench.proc.poll() is None:
            os.killpg(bench.proc.pid, signal.SIGKILL)
            bench.proc.wait()
        bench.log.close()  # finish() closes it; a step that failed before must not leak it
    log = (tmp_path / "bench.log").read_text()
    assert code == 0, log[-2000:]
    assert bench.orphans() == []
    cells = _assert_intact(out, 4)
    assert len(cells) == 4, sorted(cells)
    errored = {cid: c for cid, c in cells.items() if c["outcome"] == "error"}
    assert list(errored) == [killed_cell], {k: c["outcome"] for k, c in cells.items()}
    reason = errored[killed_cell]["reasons"][0]
    assert "server exited" in reason and "-9" in reason, reason
    assert all(c["outcome"] == "ok" for cid, c in cells.items() if cid != killed_cell)

    # Resumed: only the errored cell runs again; the others are kept byte for byte.
    kept = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    again = Bench(out, tmp_path / "bench2.log")
    assert again.finish() == 0, (tmp_path / "bench2.log").read_text()[-2000:]
    assert again.orphans() == []
    cells = _assert_intact(out, 4)
    assert {c["outcome"] for c in cells.values()} == {"ok"}
    for name, data in kept.items():
        if not name.startswith(killed_cell):
            assert (out / "cells" / name).read_bytes() == data, f"{name} was rewritten"


def test_ctrl_c_mid_run_keeps_finished_cells_and_a_resume_completes_the_rest(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    bench = Bench(out, tmp_path / "bench.log")
    try:
        bench.wait_for("a finished cell", lambda: _cells(out) or None)
        _, interrupted = bench.wait_for("the next cell's wrk", bench.wrk)
        # Ctrl-C: the terminal signals the foreground process group, i.e. lab bench's.
        os.killpg(bench.proc.pid, signal.SIGINT)
        code = bench.finish()
    finally:
        if bench.proc.poll() is None:
            os.killpg(bench.proc.pid, signal.SIGKILL)
            bench.proc.wait()
        bench.log.close()  # finish() closes it; a step that failed before must not leak it
    log = (tmp_path / "bench.log").read_text()
    assert code == 130, log[-2000:]
    assert "interrupted" in log
    assert bench.orphans() == []
    cells = _assert_intact(out, 4)
    assert 1 <= len(cells) < 4 and interrupted not in cells, sorted(cells)
    assert {c["outcome"] for c in cells.values()} == {"ok"}
    kept = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}

    again = Bench(out, tmp_path / "bench2.log")
    assert again.finish() == 0, (tmp_path / "bench2.log").read_text()[-2000:]
    assert again.orphans() == []
    cells = _assert_intact(out, 4)
    assert len(cells) == 4 and {c["outcome"] for c in cells.values()} == {"ok"}
    for name, data in kept.items():
        assert (out / "cells" / name).read_bytes() == data, f"{name} was rewritten"
    manifest = RunDir(out).read_manifest()
    assert len(manifest["sessions"]) == 2


def test_a_server_hung_in_shutdown_is_killed_and_its_stacks_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a group's cells, a server that ignores SIGTERM is killed when the grace runs
    out, and the stacks it had then go to its log, with a line on the console."""
    monkeypatch.setattr(runner, "STOP_GRACE_S", 0.5)
    log = tmp_path / "server.log"
    hang = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(120)\n"
    )
    with log.open("wb") as fh:
        proc = procs.spawn(
            [sys.executable, "-c", hang], stdout=fh.fileno(), stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while "ignoring SIGTERM" not in log.read_text() and proc.poll() is None:
        assert time.monotonic() < deadline, "the child never installed its handler"
        time.sleep(0.01)
    server = runner.Server(proc, "http://127.0.0.1:9", ["hang"], {}, log, 0.0)
    notes: list[str] = []
    harness = SimpleNamespace(ui=SimpleNamespace(note=notes.append))
    group = SimpleNamespace(target=SimpleNamespace(id="hang-server"))
    runner.Runner._stop_server(harness, server, group)  # type: ignore[arg-type]
    assert proc.returncode == -signal.SIGKILL
    assert notes == [
        "hang-server: the server did not exit within 0.5 s of SIGTERM and was killed; its "
        "stacks are at the end of server.log"
    ]
    text = log.read_text()
    assert "lab bench: hang-server: the server did not exit" in text
    if procs.py_spy() is not None:
        assert "<module> (<string>:4)" in text, text[-2000:]  # where it hung: the sleep

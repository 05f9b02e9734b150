"""SPEC §5 and deviation D5: granian stopped while its worker is still importing the app.

A stop can arrive at any moment after the start: ``lab serve`` interrupted at once, or a
two-worker server stopped as soon as its first worker answers while the second still imports
the app (how the in-flight stream test met it, now and then). ``tests/support/gated_app.py``
holds the worker's import until the stop has reached it, so the stop lands there on every run.

D5: a granian worker installs its SIGTERM handler only once the app is imported; until then it
runs the handler inherited from its master, which does nothing in a worker, so the stop is lost
and the worker goes on to serve. The registry bounds that with ``--workers-kill-timeout 5``, the
5 s drain bound every other server's template sets: granian's master kills the worker and exits
0. Asserted as deviated, so a granian that mends it fails here and the deviation is struck.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab import matrix, procs

HOST = "127.0.0.1"
IMPORT_WAIT_S = 60.0  # the worker reaching the gated import (a cold interpreter on a busy host)
STOP_WAIT_S = 15.0  # granian's kill timeout (5 s) with room to spare
KILLED = "Killing worker-1 after it refused to gracefully stop"  # granian's own log line


def _wait_for_import(gate: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + IMPORT_WAIT_S
    while not any(gate.glob("importing-*")):
        assert proc.poll() is None, f"the server exited with {proc.returncode} before importing"
        assert time.monotonic() < deadline, "no worker started importing the app"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("kind", "target"),
    [("asgi", "tests.support.gated_app:app"), ("wsgi", "tests.support.gated_app:wsgi")],
)
def test_granian_kills_a_worker_that_missed_a_stop_during_its_import(
    kind: str, target: str, tmp_path: Path
) -> None:
    gated = matrix.Pair(
        matrix.Framework(f"gated-{kind}", kind, target, ()), matrix.server("granian")
    )
    argv = gated.argv(host=HOST, port=procs.free_port(HOST), workers=1)
    log = tmp_path / "granian.log"
    with log.open("wb") as out:
        proc = procs.spawn(
            argv,
            env=os.environ | {"LAB_TEST_GATE_DIR": str(tmp_path)},
            cwd=matrix.REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_import(tmp_path, proc)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"granian did not exit within {STOP_WAIT_S} s of SIGTERM:\n{log.read_text()}"
            )
    finally:
        procs.stop_tree(proc, grace_s=1)
    output = log.read_text()
    assert code == 0, output
    assert KILLED in output, f"D5 no longer holds: the worker stopped by itself\n{output}"

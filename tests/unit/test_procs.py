"""lab/procs.py: stopping a child's process group, and what a stuck child leaves on record."""

from __future__ import annotations

import subprocess
import sys

import psutil

from lab import procs

# A child that ignores SIGTERM and says so on stdout once it does (the parent waits for that
# line rather than sleeping), with a grandchild in its group that does the same.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
    stdout=subprocess.PIPE)
child.stdout.readline()
print(child.pid, flush=True)
def waiting_for_nothing():
    time.sleep(60)
waiting_for_nothing()
"""


def test_a_child_that_exits_on_sigterm_is_clean() -> None:
    proc = procs.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    stopped = procs.stop_tree(proc, grace_s=10)
    assert not stopped.killed
    assert stopped.code == -15  # SIGTERM's default action


def test_a_stuck_child_is_killed_with_its_stacks_on_record() -> None:
    proc = procs.spawn([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    stopped = procs.stop_tree(proc, grace_s=0.5)
    proc.stdout.close()
    assert stopped.killed and stopped.code == -9
    assert not psutil.pid_exists(grandchild) or (
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    )
    if procs.py_spy() is None:
        assert "py-spy is not installed" in stopped.stuck
    else:
        # Both processes' stacks, the parent's in the function it was stuck in.
        assert "waiting_for_nothing" in stopped.stuck
        assert str(grandchild) in stopped.stuck


# A master that stops its worker itself, as servers do: on SIGTERM it tells the worker through
# a pipe, waits for it and exits. The worker says on stdout whether a SIGTERM reached it. The
# master's handler is in place before the worker starts, so the worker's "ready" means both
# are.
MASTER = """
import signal, subprocess, sys
def stop(*_):
    worker.stdin.close()
    sys.exit(worker.wait())
signal.signal(signal.SIGTERM, stop)
worker = subprocess.Popen([sys.executable, "-c", "import signal, sys; "
    "signal.signal(signal.SIGTERM, lambda *_: print('worker got SIGTERM', flush=True)); "
    "print('ready', flush=True); sys.stdin.read(); print('worker drained', flush=True)"],
    stdin=subprocess.PIPE)
while True:
    signal.pause()
"""


def test_only_the_leader_gets_sigterm_and_its_workers_drain_as_it_tells_them() -> None:
    """systemd's KillMode=mixed: a worker that takes its stop from its master (hypercorn's do)
    must not be signalled behind the master's back; the group gets only the SIGKILL."""
    proc = procs.spawn([sys.executable, "-c", MASTER], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    stopped = procs.stop_tree(proc, grace_s=10)
    said = proc.stdout.read().decode()
    proc.stdout.close()
    assert not stopped.killed and stopped.code == 0
    assert said == "worker drained\n"

"""bench/monitor.py on a real child process: context switches are counted on every thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from bench import monitor

# Two threads sleep 1 ms 300 times each (a voluntary switch per sleep) between "go" and "done";
# the main thread only waits, and the process stays alive until its stdin closes.
CHILD = textwrap.dedent(
    """
    import sys, threading, time
    finished = threading.Barrier(3)
    release = threading.Event()
    def work():
        for _ in range(300):
            time.sleep(0.001)
        finished.wait()
        release.wait()
    threads = [threading.Thread(target=work) for _ in range(2)]
    print("ready", flush=True)
    sys.stdin.readline()
    for t in threads:
        t.start()
    finished.wait()
    print("done", flush=True)
    sys.stdin.readline()
    release.set()
    """
)


def test_switches_are_summed_over_every_thread_of_the_tree() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        with monitor.TreeSampler(child.pid, interval_s=0.05) as sampler:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "done"
        main_thread = monitor.thread_switches(child.pid)[child.pid]
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()
    sample = sampler.result()
    assert sample.voluntary_switches >= 600  # both workers' sleeps
    assert main_thread[0] < 100  # the process's own status would have shown only these
    assert sample.to_json()["voluntary_switches"] == sample.voluntary_switches

#!/usr/bin/env python3
"""A stand-in for wrk: takes wrk's arguments, writes the JSON ``bench/lua/lab.lua``'s
``done()`` would write to ``$LAB_WRK_OUT``, and logs each call.

``FAKE_WRK_LOG``: a file that gets one JSON line per call (pid, path, connections).
``FAKE_WRK_STATUS``: the status every response had (default 200).
``FAKE_WRK_INTERRUPT_AT``: on that call (1-based, counted in the log), send SIGINT to the
parent (as Ctrl-C would) and wait to be stopped.
"""

import json
import os
import signal
import sys
import time


def main() -> int:
    args = sys.argv[1:]
    if args == ["-v"]:
        print("wrk 0.0.0-fake [test] Copyright (C) nobody")
        return 1
    opts = dict(zip(args[0:-1:2], args[1::2], strict=False))
    connections = int(opts.get("-c", "1"))
    duration_s = int(opts.get("-d", "1s").rstrip("s"))
    log = os.environ.get("FAKE_WRK_LOG")
    calls = 0
    if log:
        with open(log, "a") as fh:
            fh.write(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "path": os.environ.get("LAB_WRK_PATH"),
                        "connections": connections,
                    }
                )
                + "\n"
            )
        with open(log) as fh:
            calls = sum(1 for _ in fh)
    if os.environ.get("FAKE_WRK_INTERRUPT_AT") == str(calls):
        os.kill(os.getppid(), signal.SIGINT)
        time.sleep(60)
        return 1
    status = os.environ.get("FAKE_WRK_STATUS", "200")
    requests = 100 * connections
    report = {
        "format": "lab-wrk/1",
        "threads": 1,
        "duration_us": duration_s * 1_000_000,
        "requests": requests,
        "bytes": requests * 150,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
        "latency_us": {
            "min": 100,
            "mean": 900.5,
            "stdev": 50.0,
            "max": 5000,
            "p50": 800,
            "p75": 900,
            "p90": 1000,
            "p99": 2000,
            "p99_9": 4000,
        },
        "statuses": {status: requests},
        "header_counts": {},
        "responses": requests,
        "mismatches": 0,
        "response_hook": True,
    }
    with open(os.environ["LAB_WRK_OUT"], "w") as fh:
        json.dump(report, fh)
    print(f"fake wrk: {requests} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())

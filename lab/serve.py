"""``lab serve``: run one framework x server pair in the foreground (SPEC §5).

It resolves the services' URLs, starts the upstream service unless ``LAB_UPSTREAM_URL`` is
set, runs the server's command from the registry, and on SIGINT/SIGTERM stops both process
groups and exits 0 with nothing left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from types import FrameType

from . import matrix, procs, services

# Past these, a child is stuck: the servers' own graceful timeout is 5 s (lab/matrix.toml),
# and the upstream holds no requests of its own by the time the server is gone.
STOP_GRACE_S = {"server": 10.0, "upstream": 5.0}


def command(
    framework: str, server: str, *, host: str, port: int, workers: int, instances: int = 0
) -> int:
    try:
        pair = matrix.pair(framework, server)
        urls = services.current_urls()
    except (KeyError, services.ServicesError) as exc:
        print(f"lab serve: {exc}", file=sys.stderr)
        return 2
    env = {
        **os.environ,
        "LAB_DATABASE_URL": urls.database_url,
        "LAB_REDIS_URL": urls.redis_url,
        **pair.env,
    }
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    upstream: subprocess.Popen[bytes] | None = None
    server_proc: subprocess.Popen[bytes] | None = None
    try:
        if not env.get("LAB_UPSTREAM_URL"):
            up_port = procs.free_port(host)
            upstream = procs.spawn(
                [
                    sys.executable,
                    "-m",
                    "lab.cli",
                    "upstream",
                    "--host",
                    host,
                    "--port",
                    str(up_port),
                ],
                env=env,
                cwd=matrix.REPO_ROOT,
            )
            procs.wait_http_ok(f"http://{host}:{up_port}/health", timeout_s=30, proc=upstream)
            env["LAB_UPSTREAM_URL"] = f"http://{host}:{up_port}"
        if instances > 0:
            # N copies of the pair behind nginx on `port` (lab/scaleout.py), same upstream.
            from . import scaleout

            print(
                f"lab serve: {pair.id} x {instances} instance(s) of {workers} worker(s) "
                f"behind nginx on http://{host}:{port}",
                file=sys.stderr,
                flush=True,
            )
            return scaleout.run(
                pair.argv(host=host, port=scaleout.PORT_PLACEHOLDER, workers=workers),
                instances=instances,
                host=host,
                port=port,
                env=env,
                stop=stop,
            )
        argv = pair.argv(host=host, port=port, workers=workers)
        print(
            f"lab serve: {pair.id} on http://{host}:{port} ({workers} worker(s))",
            file=sys.stderr,
            flush=True,
        )
        server_proc = procs.spawn(argv, env=env, cwd=matrix.REPO_ROOT)
        while not stop.wait(0.2):
            if server_proc.poll() is not None:
                print(f"lab serve: server exited with {server_proc.returncode}", file=sys.stderr)
                return server_proc.returncode or 1
        return 0
    finally:
        if not _stopped_cleanly(server=server_proc, upstream=upstream):
            sys.exit(1)  # overrides the return above: a stuck child is a failed shutdown


def _stopped_cleanly(**children: subprocess.Popen[bytes] | None) -> bool:
    """Stop the children in order (the server first: its in-flight requests may still need
    the upstream); say which ones needed SIGKILL, with their stacks."""
    clean = True
    for name, proc in children.items():
        if proc is None:
            continue
        outcome = procs.stop_tree(proc, grace_s=STOP_GRACE_S[name])
        if outcome.killed:
            clean = False
            print(
                f"lab serve: the {name} did not exit within {STOP_GRACE_S[name]:.0f} s of "
                f"SIGTERM and was killed; its stacks then:\n{outcome.stuck}",
                file=sys.stderr,
                flush=True,
            )
    return clean

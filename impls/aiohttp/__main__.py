"""aiohttp's own server for the lab: ``python -m impls.aiohttp --host H --port P --workers N``.

aiohttp serves one process per event loop. For N workers the parent binds the listening
socket once and forks N workers that each run the app on it (the kernel hands each
connection to one of them, as under gunicorn's pre-fork master). The parent only supervises:
on SIGTERM or SIGINT it stops the workers, waits for them and exits 0; if a worker dies, it
stops the rest and exits 1 rather than respawning. Workers get a parent-death signal, so none
outlives it. With ``--workers 1`` the app runs in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Sequence

import uvloop
from aiohttp import web

from .app import create_app

_PR_SET_PDEATHSIG = 1
_STOP = {signal.SIGTERM, signal.SIGINT}
_SHUTDOWN_S = 5.0  # in-flight requests get this long, as the other servers' graceful timeout
_GRACE_S = 10.0  # the parent's wait for a worker: shutdown plus closing the pools


async def serve(sock: socket.socket) -> None:
    """One worker: the app on ``sock`` until SIGINT/SIGTERM, no access log.

    ``AppRunner`` + ``SockSite`` rather than ``run_app``: ``run_app`` turns every signal into
    ``GracefulExit``, so a second SIGTERM (the parent's, after the process group's) would
    abort the cleanup half-way. Here a signal only sets an event; repeats are harmless.
    """
    runner = web.AppRunner(create_app(), access_log=None, shutdown_timeout=_SHUTDOWN_S)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in _STOP:
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()  # stop accepting, drain requests, then the cleanup_ctx exits


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def _worker(sock: socket.socket, parent: int) -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP | {signal.SIGCHLD})
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        return
    uvloop.run(serve(sock))


def supervise(sock: socket.socket, workers: int) -> int:
    # Block the signals before forking (children inherit the mask and unblock it), then
    # wait for one synchronously: no handler, no polling, no window where one is lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP | {signal.SIGCHLD})
    # fork, not spawn: the workers inherit the listening socket and the imported modules.
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_worker, args=(sock, os.getpid()), name=f"aiohttp-worker-{i + 1}")
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    sock.close()  # the workers hold it now
    code = 0
    if signal.sigwait(_STOP | {signal.SIGCHLD}) == signal.SIGCHLD:
        for proc in procs:
            if not proc.is_alive():
                print(
                    f"impls.aiohttp: {proc.name} exited with {proc.exitcode}; stopping",
                    file=sys.stderr,
                )
        code = 1
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(_GRACE_S)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m impls.aiohttp", description="aiohttp's own server for the lab's app."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    sock = bind(args.host, args.port)
    if args.workers == 1:
        uvloop.run(serve(sock))
        return 0
    return supervise(sock, args.workers)


if __name__ == "__main__":
    sys.exit(main())

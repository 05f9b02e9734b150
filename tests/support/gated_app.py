"""An app whose import lasts until the server has stopped it (tests/test_server_stops.py).

Imported by a server's worker, it wraps whatever SIGTERM handler the worker has at that
moment and writes ``importing-<pid>`` into ``$LAB_TEST_GATE_DIR``. It returns from the import
once a SIGTERM has reached this process (it writes ``stopped-<pid>`` and hands the signal,
unchanged, to that handler) or once the test writes ``release``: hypercorn's workers take
their stop through an Event from their master, never as a signal. So the stop lands inside
the app's import on every run, not by chance. Afterwards it serves ``200 ok`` as ASGI
(``app``) and WSGI (``wsgi``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

IMPORT_HOLD_S = 60.0  # bounded: a server that never forwards the stop fails its test, not hangs

_GATE = Path(os.environ["LAB_TEST_GATE_DIR"])
_stopped = threading.Event()
_handler_in_place = signal.getsignal(signal.SIGTERM)


def _hand_on(signum: int, frame: FrameType | None) -> None:
    _GATE.joinpath(f"stopped-{os.getpid()}").touch()
    _stopped.set()
    if callable(_handler_in_place):
        _handler_in_place(signum, frame)
    elif _handler_in_place == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


signal.signal(signal.SIGTERM, _hand_on)
_GATE.joinpath(f"importing-{os.getpid()}").touch()
_deadline = time.monotonic() + IMPORT_HOLD_S
while not (_stopped.is_set() or _GATE.joinpath("release").exists()):
    if time.monotonic() > _deadline:
        break
    time.sleep(0.01)  # Python runs the handler in this thread, between two of these sleeps
# Put the worker's own handler back, as if the import had never been watched.
signal.signal(signal.SIGTERM, _handler_in_place)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

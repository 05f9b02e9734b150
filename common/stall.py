"""How long a response may wait on a client that does not read (SPEC §2.4).

A server writes a large or streamed body as fast as the client reads it: the socket's send
buffer fills, and the next write waits. A client that stops reading without closing its
connection makes that wait last for ever, and whatever the response holds meanwhile (a
task and a batch of rows; under WSGI, one of the worker's few threads) is held with it.
``LAB_WRITE_TIMEOUT_MS`` bounds each such wait: past it, the response is abandoned and the
connection closed, the client sees a truncated body. A client that reads, however slowly,
keeps its stream: every write it lets through starts the clock again.

The ASGI middleware and the aiohttp adapter wrap the writes of streamed bodies in
:func:`within`; the WSGI middleware gives gunicorn's socket a timeout, which bounds its
``sendall``. A stream holds no database connection while it waits either way: it reads one
batch per query (``common.aio.service.stream_items``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

__all__ = ["ClientStalled", "abandoned", "within"]

log = logging.getLogger("lab")


class ClientStalled(Exception):
    """The client read nothing for the write timeout; the response is given up."""


async def within(write: Awaitable[None], seconds: float) -> None:
    """``await write``, or :class:`ClientStalled` after ``seconds`` without it completing."""
    try:
        async with asyncio.timeout(seconds):
            await write
    except TimeoutError:
        raise ClientStalled(f"the client read nothing for {seconds:g} s") from None


def abandoned(path: str, exc: BaseException) -> None:
    """One log line for a response given up on a stalled client (no traceback: the client,
    not the service, failed)."""
    log.warning("%s: response abandoned, %s", path, exc)

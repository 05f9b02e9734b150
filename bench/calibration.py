"""Servers whose latency is known in advance, to check what a load generator reports.

``python -m bench.calibration delay --ms 10`` answers every request after 10 ms;
``python -m bench.calibration freeze`` blocks its whole process for the first half of every
second (as a stop-the-world pause would) and answers at once otherwise. Both print
``listening on HOST:PORT`` once bound, serve keep-alive HTTP/1.1 GET requests (``/health``
included) and stop on SIGTERM.

What a generator must report against them, at a rate the server keeps up with:
- delay: p50 within 1 ms of the delay;
- freeze: since half of all requests fall due during a pause and wait for its end, from 0 to
  500 ms, p75 near 250 ms. A generator that times requests from their actual send (closed
  loop, coordinated omission) sends nothing while its connections are stuck, so it records
  only one stalled request per connection per pause and reports a p75 of a millisecond or so.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

__all__ = ["serve"]

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 16384


class _Protocol(asyncio.Protocol):
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            self.buffer = self.buffer[end + 4 :]
            if self.delay_s > 0:
                asyncio.get_running_loop().call_later(self.delay_s, self._answer)
            else:
                self._answer()
        if len(self.buffer) > MAX_HEAD:
            self.transport.write(BAD)
            self.transport.close()

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)


def _freeze_every_second(loop: asyncio.AbstractEventLoop) -> None:
    """Block the loop from each whole second of the clock to its half, then rearm."""
    now = time.time()
    into = now % 1.0
    if into < 0.5:
        time.sleep(0.5 - into)  # the pause: nothing else runs
    loop.call_later(1.0 - (time.time() % 1.0), _freeze_every_second, loop)


async def serve(kind: str, host: str, port: int, delay_ms: float) -> None:
    loop = asyncio.get_running_loop()
    delay_s = delay_ms / 1000 if kind == "delay" else 0.0
    server = await loop.create_server(lambda: _Protocol(delay_s), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    if kind == "freeze":
        loop.call_soon(_freeze_every_second, loop)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__)
    parser.add_argument("kind", choices=("delay", "freeze"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ms", type=float, default=10.0, help="delay: milliseconds a response")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.kind, args.host, args.port, args.ms))


if __name__ == "__main__":
    main()

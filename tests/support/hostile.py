"""Hostile clients for the reliability suite, on raw asyncio sockets (an HTTP client library
would refuse to misbehave): slowloris, oversize headers, oversize bodies, idle keep-alive
connections. Every loop is bounded by a stop event, a deadline and a connection count.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Hostile", "idle_connection_budget"]

READ_TIMEOUT_S = 5.0


def idle_connection_budget(wanted: int = 300) -> int:
    """Hundreds of idle connections, bounded by the open-file limit (ours, and the server's:
    it inherits the same limit) with room left for everything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(10, min(wanted, (soft - 256) // 2))


def _status(head: bytes) -> str:
    """``HTTP/1.1 413 …`` → ``"413"``; anything else (or nothing) → ``"closed"``."""
    parts = head.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return parts[1].decode()
    return "closed"


@dataclass
class Hostile:
    """Runs one kind of hostile traffic against ``host:port`` in a thread until :meth:`stop`."""

    host: str
    port: int
    kind: str  # "slowloris" | "flood" (oversize headers and bodies, idle keep-alive)
    slow_connections: int = 50
    idle_connections: int = 300
    max_seconds: float = 60.0
    stats: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def start(self) -> Hostile:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(READ_TIMEOUT_S + 15)
        assert not self._thread.is_alive(), "hostile clients did not stop"
        return self.stats

    async def _main(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        if self.kind == "slowloris":
            self.stats = {"opened": 0, "closed_by_server": 0, "answered": Counter()}
            jobs: list[Awaitable[None]] = [
                self._slowloris(deadline) for _ in range(self.slow_connections)
            ]
        else:
            self.stats = {
                "oversize_headers": Counter(),
                "oversize_body": Counter(),
                "idle_opened": 0,
                "idle_answered": 0,
                "idle_closed_by_server": 0,
            }
            jobs = [
                self._repeat(self._oversize_headers, deadline),
                self._repeat(self._oversize_body, deadline),
                self._idle(deadline),
            ]
        try:
            await asyncio.gather(*jobs)
        finally:
            for w in self._writers:
                w.close()
            self.stats = {
                k: dict(v) if isinstance(v, Counter) else v for k, v in self.stats.items()
            }

    def _running(self, deadline: float) -> bool:
        return not self._stop.is_set() and time.monotonic() < deadline

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), READ_TIMEOUT_S
        )
        self._writers.append(writer)
        return reader, writer

    async def _pause(self, reader: asyncio.StreamReader, seconds: float) -> bytes | None:
        """Wait up to ``seconds`` for the server; None if it said nothing, else what it sent
        (``b""``: it closed the connection)."""
        try:
            return await asyncio.wait_for(reader.read(4096), seconds)
        except TimeoutError:
            return None
        except ConnectionError:
            return b""

    async def _slowloris(self, deadline: float) -> None:
        """Headers trickled one line a second, never finished; reopened when the server
        gives up on one (as the real attack does)."""
        while self._running(deadline):
            try:
                reader, writer = await self._open()
            except (OSError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            self.stats["opened"] += 1
            try:
                writer.write(f"GET /json HTTP/1.1\r\nHost: {self.host}\r\n".encode())
                n = 0
                while self._running(deadline):
                    n += 1
                    writer.write(f"X-Trickle-{n}: {n}\r\n".encode())
                    await writer.drain()
                    said = await self._pause(reader, 1.0)
                    if said == b"":
                        self.stats["closed_by_server"] += 1
                        break
                    if said:
                        self.stats["answered"][_status(said)] += 1
                        break
            except ConnectionError:
                self.stats["closed_by_server"] += 1
            finally:
                writer.close()

    async def _repeat(self, attempt: Callable[[], Awaitable[str]], deadline: float) -> None:
        while self._running(deadline):
            try:
                outcome = await attempt()
            except (OSError, TimeoutError):
                outcome = "closed"
            key = "oversize_headers" if attempt == self._oversize_headers else "oversize_body"
            self.stats[key][outcome] += 1
            await asyncio.sleep(0.1)

    async def _answer(self, reader: asyncio.StreamReader) -> str:
        said = await self._pause(reader, READ_TIMEOUT_S)
        return "no-answer" if said is None else _status(said)

    async def _oversize_headers(self) -> str:
        """One 100 KB header: past every server's header limit, and SPEC §2.1's 64 KiB."""
        reader, writer = await self._open()
        try:
            writer.write(b"GET /json HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return await self._answer(reader)
        finally:
            writer.close()

    async def _oversize_body(self) -> str:
        """A 10 MB body announced, 1 MB sent: SPEC §2.1's 413, by Content-Length."""
        reader, writer = await self._open()
        try:
            writer.write(
                b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 10000000\r\n\r\n"
            )
            with contextlib.suppress(ConnectionError):
                for _ in range(16):
                    writer.write(b" " * 65536)
                    await writer.drain()
            return await self._answer(reader)
        finally:
            writer.close()

    async def _idle(self, deadline: float) -> None:
        """Connections that make one keep-alive request each, read the answer, then sit."""
        held: list[asyncio.StreamReader] = []
        for _ in range(self.idle_connections):
            if not self._running(deadline):
                break
            try:
                reader, writer = await self._open()
            except (OSError, TimeoutError):
                break
            self.stats["idle_opened"] += 1
            writer.write(b"GET /json HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            got = b""
            with contextlib.suppress(TimeoutError, ConnectionError):
                while b"Hello, World!" not in got:
                    chunk = await asyncio.wait_for(reader.read(4096), READ_TIMEOUT_S)
                    if not chunk:
                        break
                    got += chunk
            if b"Hello, World!" in got:
                self.stats["idle_answered"] += 1
            held.append(reader)
        # Sit until told to stop (a thread waits on the threading.Event for the loop).
        await asyncio.to_thread(self._stop.wait, max(0.0, deadline - time.monotonic()))
        # Which of them the server has closed meanwhile (its keep-alive timeout).
        for reader in held:
            if reader.at_eof() or (await self._pause(reader, 0) == b""):
                self.stats["idle_closed_by_server"] += 1

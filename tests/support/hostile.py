"""Hostile clients for the reliability suite, on raw asyncio sockets (an HTTP client library
would refuse to misbehave): slowloris, oversize headers, oversize bodies, idle keep-alive
connections, readers that stop reading a large response. Every loop is bounded by a stop
event, a deadline and a connection count.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from .client import TLS
from .traffic import latency_summary

__all__ = ["Good", "Hostile", "idle_connection_budget"]

READ_TIMEOUT_S = 5.0
DRAIN_S = 3.0  # what a stalled reader reads after it is let go, at most
CHUNKED_END = b"0\r\n\r\n"


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


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


async def _failed(exc: BaseException) -> str:
    return "not-connected" if isinstance(exc, OSError | TimeoutError) else repr(exc)


async def _ending(reader: asyncio.StreamReader, length: int | None, until: float) -> str:
    """Read the rest of a response: ``"complete"`` (its ``Content-Length``, or a chunked
    body's last chunk), ``"truncated"`` (the server closed the connection first), or
    ``"open"`` (still coming at ``until``). Only the tail is kept."""
    tail, seen = b"", 0
    try:
        while (left := until - time.monotonic()) > 0:
            data = await asyncio.wait_for(reader.read(1 << 20), left)
            if not data:
                return "truncated"
            seen += len(data)
            tail = (tail + data)[-len(CHUNKED_END) :]
            if (length is not None and seen >= length) or (length is None and tail == CHUNKED_END):
                return "complete"
    except TimeoutError:
        pass
    except ConnectionError:
        return "truncated"
    return "open"


@dataclass
class Hostile:
    """Runs one kind of hostile traffic against ``host:port`` in a thread until :meth:`stop`."""

    host: str
    port: int
    kind: str  # "slowloris" | "flood" (oversize headers and bodies, idle keep-alive) | "stalled"
    slow_connections: int = 50
    idle_connections: int = 300
    # "stalled": one connection per entry, each asking for its target (a request target and
    # an Accept) and reading the head and a few KiB, then nothing more until stopped.
    stalled_targets: tuple[tuple[str, str], ...] = ()
    max_seconds: float = 60.0
    stats: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _settled: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Hostile:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def wait_stalled(self, timeout: float) -> bool:
        """True once every stalled reader has its response head (or has given up trying)."""
        return self._settled.wait(timeout)

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
        elif self.kind == "stalled":
            self.stats = {"heads": Counter()}
            jobs = [self._stalled(deadline)]
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

    async def _stalled(self, deadline: float) -> None:
        """Open every stalled reader, let each read its head, then hold them all unread."""

        async def one(target: str, accept: str) -> tuple[asyncio.StreamReader, int | None]:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # A small receive window, so the server's writes block within a few KiB.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (self.host, self.port)),
                READ_TIMEOUT_S,
            )
            # limit: the reader stops taking bytes from the socket past 2 x 4 KiB.
            reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
            self._writers.append(writer)
            writer.write(
                f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\nAccept: {accept}\r\n"
                "Accept-Encoding: identity\r\n\r\n".encode()
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            head = b""
            with contextlib.suppress(TimeoutError, ConnectionError, asyncio.LimitOverrunError):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            self.stats["heads"][_status(head)] += 1
            return reader, _content_length(head)

        opened = await asyncio.gather(
            *(one(target, accept) for target, accept in self.stalled_targets),
            return_exceptions=True,
        )
        self._settled.set()
        await asyncio.to_thread(self._stop.wait, max(0.0, deadline - time.monotonic()))
        # Now read what each has left: how did its response end?
        drain_until = time.monotonic() + DRAIN_S
        ends: list[str] = await asyncio.gather(
            *(
                _ending(*got, drain_until) if isinstance(got, tuple) else _failed(got)
                for got in opened
            )
        )
        by_target: dict[str, dict[str, int]] = {}
        for (target, accept), end in zip(self.stalled_targets, ends, strict=True):
            counts = by_target.setdefault(f"{target} {accept}", {})
            counts[end] = counts.get(end, 0) + 1
        self.stats["ends"] = by_target

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


class Good:
    """The well-behaved client: one keep-alive connection, asking for each of ``checks``'
    paths in turn; an answer is good when it is a 200 whose JSON body passes the path's
    check, within ``timeout``."""

    def __init__(self, url: str, timeout: float, checks: Mapping[str, Callable[[Any], bool]]):
        self.http = httpx.Client(base_url=url, timeout=timeout, verify=TLS)
        self.checks = checks
        self.paths = tuple(checks)

    def one(self, path: str) -> tuple[bool, float, str]:
        started = time.monotonic()
        try:
            resp = self.http.get(path)
            ok = resp.status_code == 200 and self.checks[path](resp.json())
            what = "ok" if ok else f"{resp.status_code} {resp.text[:100]}"
        except httpx.HTTPError as exc:
            ok, what = False, type(exc).__name__
        return ok, time.monotonic() - started, what

    def phase(self, seconds: float) -> dict[str, Any]:
        results = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(results) < 10_000:
            results.append(self.one(self.paths[len(results) % len(self.paths)]))
        failures = [what for ok, _, what in results if not ok]
        return {
            "requests": len(results),
            "ok": len(results) - len(failures),
            "failed": len(failures),
            "failures": sorted(set(failures))[:5],
            "latency": latency_summary(_Timed(t) for _, t, _ in results),
            "max_s": max((t for _, t, _ in results), default=0.0),
        }

    def until_ok(self, seconds: float) -> float | None:
        """Seconds until the first path answers correctly again (bounded), or None."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if self.one(self.paths[0])[0]:
                return time.monotonic() - started
        return None

    def close(self) -> None:
        self.http.close()


class _Timed:
    """The shape ``latency_summary`` reads."""

    def __init__(self, seconds: float) -> None:
        self.latency_s = seconds

"""Requests per connection in a closed-loop cell: did every connection get served?

A closed loop's requests/s is a sum over its connections, and a server can reach a good sum
while some connections wait: an event loop that accepts 64 connections but serves a few of
them first, a worker that takes more than its share of a shared socket, a connection stuck
behind a keep-alive timeout. Their requests then finish late or never, and the tail
(p99, max) is all that shows it. wrk reports totals only, and its Lua API cannot tell its
connections apart.

The kernel can. Every TCP socket keeps ``bytes_received`` (``struct tcp_info``), and
``ss -tinp`` prints it for each socket with the process that holds it. Near the end of the
measured window this module reads it for every established socket from the load tool to
the server's port; divided by the cell's mean response size, that is how many responses
each connection has read so far. The snapshot is taken ``END_MARGIN_S`` before the tool's
window closes (wrk then closes its sockets and the counters go with them), so it covers
all but that margin; shares, not totals, are what it is for.

What it cannot see: a server that closes connections after each response (gunicorn's sync
worker) leaves sockets of one response each, opened and closed all through the window;
``reconnected`` says so, and its shares are not judged. Otherwise a connection with no
established socket near the end of the window counts as served nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from statistics import median
from typing import Any

from .background import Background

__all__ = ["END_MARGIN_S", "ConnectionSnapshot", "parse_ss", "requests_per_connection"]

END_MARGIN_S = 0.5
# A median socket that has read this many responses or fewer: the server closes connections.
RECONNECTING_MEDIAN = 1.5

_OWNER = re.compile(r'users:\(\("([^"]+)",pid=(\d+)')
_RECEIVED = re.compile(r"\bbytes_received:(\d+)")


def parse_ss(text: str, tool: str) -> list[int]:
    """``bytes_received`` of each socket in ``ss -Htinp`` output that ``tool`` holds (a
    socket's line names its owner; the next line, indented, holds its tcp_info)."""
    out: list[int] = []
    owner_matches = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():  # a socket's line: state, queues, addresses, owner
            found = _OWNER.search(line)
            owner_matches = found is not None and found.group(1) == tool
            continue
        if owner_matches and (got := _RECEIVED.search(line)) is not None:
            out.append(int(got.group(1)))
        owner_matches = False
    return out


def requests_per_connection(
    received: list[int], bytes_per_response: float | None, *, connections: int, at_s: float
) -> dict[str, Any] | None:
    """Responses read per connection (min, median, max) from the sockets' byte counts."""
    if not received or not bytes_per_response:
        return None
    counts = sorted(b / bytes_per_response for b in received)
    seen = len(counts)
    # Sockets of one response each: the server closes every connection after its response
    # (gunicorn's sync worker), so a connection is many short sockets and shares say nothing.
    reconnected = median(counts) <= RECONNECTING_MEDIAN
    if not reconnected and seen < connections:
        # Connections the tool opened that hold no established socket this late in the
        # window (a handshake dropped by a full listen queue, retried after 1 s, 3 s...):
        # none of their requests has been served.
        counts = [0.0] * (connections - seen) + counts
    mid = median(counts)
    return {
        "connections_seen": seen,
        "min": round(counts[0], 1),
        "median": round(mid, 1),
        "max": round(counts[-1], 1),
        "min_share_of_median": round(counts[0] / mid, 3) if mid else None,
        "reconnected": reconnected,
        "sampled_at_s": round(at_s, 2),
        "how": "ss -tinp bytes_received per socket / mean response bytes",
    }


class ConnectionSnapshot(Background):
    """Around one run of the load tool: at ``at_s`` seconds after entry, the byte counts
    of ``tool``'s sockets to ``port`` (:attr:`received`, empty if ``ss`` is missing or the
    tool had already closed them)."""

    def __init__(self, port: int, tool: str, at_s: float) -> None:
        super().__init__("ss-snapshot", join_timeout_s=15)
        self.port = port
        self.tool = tool
        self.at_s = at_s
        self.received: list[int] = []

    def run(self) -> None:
        if self.stopping.wait(self.at_s):
            return  # the load ended first
        ss = shutil.which("ss")
        if ss is None:
            return
        done = subprocess.run(
            [ss, "-Htinp", "state", "established", "dport", "=", f":{self.port}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        if done.returncode == 0:
            self.received = parse_ss(done.stdout, self.tool)

"""Rate-limit maths, headers, client keys (SPEC §3.7) and the Lua script on a real Redis."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from common import ratelimit
from common.ratelimit import (
    LUA_SOURCE,
    Decision,
    client_key,
    decide,
    fail_open_headers,
    headers,
)


@pytest.mark.parametrize(
    ("count", "ttl_ms", "limit", "expected"),
    [
        (1, 60_000, 100, Decision(True, 100, 99, 60)),
        (99, 59_999, 100, Decision(True, 100, 1, 60)),
        (100, 30_000, 100, Decision(True, 100, 0, 30)),
        (101, 30_000, 100, Decision(False, 100, 0, 30)),
        (5000, 30_000, 100, Decision(False, 100, 0, 30)),  # remaining never negative
        (1, 1000, 1, Decision(True, 1, 0, 1)),
        (2, 1001, 1, Decision(False, 1, 0, 2)),  # reset rounds up
        (1, 1, 10, Decision(True, 10, 9, 1)),
        (1, 0, 10, Decision(True, 10, 9, 1)),  # reset is at least 1
        (1, -1, 10, Decision(True, 10, 9, 1)),
        (3, 1500, 10, Decision(True, 10, 7, 2)),
    ],
)
def test_decide(count: int, ttl_ms: int, limit: int, expected: Decision) -> None:
    assert decide(count, ttl_ms, limit) == expected


def test_headers_when_allowed() -> None:
    assert headers(Decision(True, 100, 99, 60)) == {
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "99",
        "RateLimit-Reset": "60",
    }


def test_headers_when_refused_add_retry_after() -> None:
    assert headers(Decision(False, 100, 0, 17)) == {
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "17",
        "Retry-After": "17",
    }


def test_fail_open_headers_have_no_remaining() -> None:
    assert fail_open_headers(100, 60) == {"RateLimit-Limit": "100", "RateLimit-Reset": "60"}


TRUSTED = ("10.0.0.0/8", "192.168.1.1", "fd00::/8", "::1")


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        # no peer
        (None, "1.2.3.4", TRUSTED, "unknown"),
        ("", None, TRUSTED, "unknown"),
        # untrusted peer: XFF ignored, however it looks
        ("203.0.113.9", None, TRUSTED, "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", TRUSTED, "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", (), "203.0.113.9"),
        # trusted peer without XFF: the peer
        ("10.1.2.3", None, TRUSTED, "10.1.2.3"),
        ("10.1.2.3", "", TRUSTED, "10.1.2.3"),
        # trusted peer (exact address and CIDR): the rightmost untrusted XFF address
        ("192.168.1.1", "1.2.3.4", TRUSTED, "1.2.3.4"),
        ("10.1.2.3", "1.2.3.4", TRUSTED, "1.2.3.4"),
        ("10.1.2.3", "1.2.3.4, 10.9.9.9", TRUSTED, "1.2.3.4"),
        ("10.1.2.3", "1.2.3.4,10.9.9.9,192.168.1.1", TRUSTED, "1.2.3.4"),
        # spoofed chain: the client wrote "6.6.6.6" itself, the proxy appended the real address
        ("10.1.2.3", "6.6.6.6, 1.2.3.4", TRUSTED, "1.2.3.4"),
        ("10.1.2.3", "10.0.0.1, 1.2.3.4", TRUSTED, "1.2.3.4"),  # spoofing a trusted one too
        # every hop trusted: the leftmost
        ("10.1.2.3", "10.0.0.7, 10.0.0.8", TRUSTED, "10.0.0.7"),
        # a peer outside the CIDR, next to it
        ("11.0.0.1", "1.2.3.4", TRUSTED, "11.0.0.1"),
        ("192.168.1.2", "1.2.3.4", TRUSTED, "192.168.1.2"),
        # garbage stops the walk at the last address before it (never trusts what is left)
        ("10.1.2.3", "1.2.3.4, garbage", TRUSTED, "10.1.2.3"),
        ("10.1.2.3", "1.2.3.4, garbage, 10.0.0.5", TRUSTED, "10.0.0.5"),
        ("10.1.2.3", "unknown", TRUSTED, "10.1.2.3"),
        ("10.1.2.3", "999.1.1.1", TRUSTED, "10.1.2.3"),
        ("10.1.2.3", "1.2.3.4, <script>", TRUSTED, "10.1.2.3"),
        ("10.1.2.3", "1.2.3.4;rm -rf", TRUSTED, "10.1.2.3"),
        # garbage left of the client is never reached
        ("10.1.2.3", "garbage, 1.2.3.4", TRUSTED, "1.2.3.4"),
        # empty list elements are skipped, not garbage
        ("10.1.2.3", "1.2.3.4, , ", TRUSTED, "1.2.3.4"),
        ("10.1.2.3", " , ", TRUSTED, "10.1.2.3"),
        # ports and brackets some proxies add
        ("10.1.2.3", "1.2.3.4:5678", TRUSTED, "1.2.3.4"),
        ("10.1.2.3", "[2001:db8::7]:443", TRUSTED, "2001:db8::/64"),
        ("10.1.2.3", "[2001:db8::7]", TRUSTED, "2001:db8::/64"),
        # IPv6 counts by its /64: one subscriber's block is one client
        ("::1", "2001:db8::1", TRUSTED, "2001:db8::/64"),
        ("::1", "2001:db8::ffff:1", TRUSTED, "2001:db8::/64"),
        ("::1", "2001:db8:0:1::1", TRUSTED, "2001:db8:0:1::/64"),
        ("fd00::5", "2001:db8::1, fd12::1", TRUSTED, "2001:db8::/64"),
        ("2001:db8::2", "1.2.3.4", TRUSTED, "2001:db8::/64"),
        ("::1", "2001:DB8:0:0::1", TRUSTED, "2001:db8::/64"),  # normalised
        ("::1", "2001:db8::1::2", TRUSTED, "::/64"),  # invalid IPv6 is garbage
        # IPv4-mapped IPv6 (dual-stack sockets) counts as the IPv4 address
        ("::ffff:10.1.2.3", "1.2.3.4", TRUSTED, "1.2.3.4"),
        ("::ffff:203.0.113.9", None, TRUSTED, "203.0.113.9"),
        ("10.1.2.3", "::ffff:1.2.3.4", TRUSTED, "1.2.3.4"),
        # an IPv4 address is not inside an IPv6 network, nor the reverse
        ("10.1.2.3", "1.2.3.4", ("::/0",), "10.1.2.3"),
        ("::1", "2001:db8::1", ("0.0.0.0/0",), "::/64"),
        # match-everything trust: the leftmost
        ("10.1.2.3", "1.2.3.4, 5.6.7.8", ("0.0.0.0/0",), "1.2.3.4"),
        # a peer that is not an IP (unix socket) is its own key
        ("/run/lab.sock", "1.2.3.4", TRUSTED, "/run/lab.sock"),
        # invalid trusted entries are ignored, valid ones still apply
        ("10.1.2.3", "1.2.3.4", ("not-an-ip", "10.0.0.0/8"), "1.2.3.4"),
        ("10.1.2.3", "1.2.3.4", ("not-an-ip",), "10.1.2.3"),
        # non-strict CIDR (host bits set) still parses
        ("10.1.2.3", "1.2.3.4", ("10.1.2.0/16",), "1.2.3.4"),
    ],
)
def test_client_key(
    peer: str | None, xff: str | None, trusted: tuple[str, ...], expected: str
) -> None:
    assert client_key(peer, [] if xff is None else [xff], trusted) == expected


def test_client_key_accepts_a_list_of_trusted() -> None:
    assert client_key("10.1.2.3", ["1.2.3.4"], ["10.0.0.0/8"]) == "1.2.3.4"


def test_every_forwarded_for_line_is_one_list() -> None:
    # a proxy that adds a line of its own does not hide the client's address before it
    assert client_key("10.1.2.3", ["1.2.3.4", "10.0.0.7"], TRUSTED) == "1.2.3.4"
    assert client_key("10.1.2.3", ["1.2.3.4, 5.6.7.8", "10.0.0.7"], TRUSTED) == "5.6.7.8"


def test_header_values_too_long_for_a_real_client_are_not_kept() -> None:
    from common.headercache import LONGEST_CACHED, header_cache

    calls: list[str] = []

    @header_cache(maxsize=8)
    def parse(header: str) -> int:
        calls.append(header)
        return len(header)

    short, long = "a" * LONGEST_CACHED, "b" * (LONGEST_CACHED + 1)
    assert [parse(short), parse(short), parse(long), parse(long)] == [len(short)] * 2 + [
        len(long)
    ] * 2
    assert calls == [short, long, long]  # the long value was computed twice, kept never


# --- the Lua script against the real Redis ---------------------------------------------

WINDOW_MS = 60_000


class _Lua:
    """The script registered on a real Redis, with keys under a prefix unique to one test."""

    def __init__(self) -> None:
        self.client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
        self.prefix = f"lab:test:{uuid.uuid4().hex}:"
        self.script: Any = self.client.register_script(LUA_SOURCE)

    def key(self, name: str = "rl") -> str:
        return self.prefix + name

    def run(self, key: str, limit: int, window_ms: int) -> tuple[int, int]:
        count, ttl = self.script(keys=[key], args=[limit, window_ms])
        return int(count), int(ttl)

    def close(self) -> None:
        keys = list(self.client.scan_iter(match=self.prefix + "*"))
        if keys:
            self.client.delete(*keys)
        self.client.close()


@pytest.fixture
def lua() -> Iterator[_Lua]:
    helper = _Lua()
    try:
        yield helper
    finally:
        helper.close()


def test_first_request_starts_the_window(lua: _Lua) -> None:
    key = lua.key()
    count, ttl = lua.run(key, 5, WINDOW_MS)
    assert count == 1
    assert WINDOW_MS - 1000 < ttl <= WINDOW_MS
    assert 0 < lua.client.pttl(key) <= WINDOW_MS


def test_limit_holds_and_remaining_counts_down(lua: _Lua) -> None:
    key = lua.key()
    decisions = [decide(*lua.run(key, 3, WINDOW_MS), 3) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert all(55 <= d.reset_s <= 60 for d in decisions)


def test_window_is_fixed_not_sliding(lua: _Lua) -> None:
    key = lua.key()
    _, first_ttl = lua.run(key, 100, WINDOW_MS)
    time.sleep(0.02)
    _, later_ttl = lua.run(key, 100, WINDOW_MS)
    assert later_ttl < first_ttl  # later requests do not push the window's end out


def test_new_window_after_expiry(lua: _Lua) -> None:
    key = lua.key()
    for _ in range(3):
        lua.run(key, 3, 50)
    deadline = time.monotonic() + 5
    while lua.client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.01)
    count, ttl = lua.run(key, 3, 50)
    assert count == 1
    assert 0 < ttl <= 50


def test_key_without_ttl_heals(lua: _Lua) -> None:
    key = lua.key()
    lua.client.set(key, 7)  # e.g. restored from a dump without its expiry
    assert lua.client.pttl(key) == -1
    count, ttl = lua.run(key, 10, WINDOW_MS)
    assert count == 8
    assert ttl == WINDOW_MS
    assert 0 < lua.client.pttl(key) <= WINDOW_MS


def test_clients_are_counted_separately(lua: _Lua) -> None:
    a, b = lua.key("a"), lua.key("b")
    for _ in range(3):
        lua.run(a, 10, WINDOW_MS)
    assert lua.run(b, 10, WINDOW_MS)[0] == 1


def test_concurrent_calls_get_distinct_counts(lua: _Lua) -> None:
    key = lua.key()
    with ThreadPoolExecutor(max_workers=8) as ex:  # redis-py's pool is thread-safe
        counts = list(ex.map(lambda _: lua.run(key, 50, WINDOW_MS)[0], range(60)))
    assert sorted(counts) == list(range(1, 61))  # atomic: no lost or repeated increments
    assert sum(decide(c, 1000, 50).allowed for c in counts) == 50


def test_the_script_redis_runs_is_the_file(lua: _Lua) -> None:
    """What the twins register (``LUA_SOURCE``) is ``common/lua/ratelimit.lua`` as it stands,
    and a decision loads exactly that text into Redis (by its SHA-1, as EVALSHA runs it)."""
    source = (Path(ratelimit.__file__).parent / "lua" / "ratelimit.lua").read_bytes()
    assert LUA_SOURCE.encode() == source
    sha = hashlib.sha1(source).hexdigest()
    lua.client.script_flush()
    assert lua.client.script_exists(sha) == [False]
    lua.run(lua.key(), 5, WINDOW_MS)
    assert lua.client.script_exists(sha) == [True]

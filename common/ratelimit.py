"""The fixed-window rate limiter's pure half (SPEC §3.7): the Lua script's text, the
decision and headers from its result, and the client key from the peer and proxies.

The script does the atomic counting in Redis (registered once per worker, as litestar's
Redis store does); everything here is arithmetic on what it returns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .headercache import header_cache

__all__ = ["LUA_SOURCE", "Decision", "client_key", "decide", "fail_open_headers", "headers"]

LUA_SOURCE: str = (Path(__file__).parent / "lua" / "ratelimit.lua").read_text(encoding="utf-8")

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int


def decide(count: int, ttl_ms: int, limit: int) -> Decision:
    """Turn the script's ``{count, ttl_ms}`` into a decision; ``reset_s`` rounds up, ≥ 1."""
    return Decision(
        allowed=count <= limit,
        limit=limit,
        remaining=max(0, limit - count),
        reset_s=max(1, -(-ttl_ms // 1000)),
    )


def headers(decision: Decision) -> dict[str, str]:
    """RateLimit-* headers for every answer; a refusal adds ``Retry-After``."""
    reset = str(decision.reset_s)
    out = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": reset,
    }
    if not decision.allowed:
        out["Retry-After"] = reset
    return out


def fail_open_headers(limit: int, window_s: int) -> dict[str, str]:
    """Redis is down and the limiter fails open: the limit is known, the remainder is not
    (SPEC §3.7: ``RateLimit-Remaining`` absent); the reset is at most one window away."""
    return {"RateLimit-Limit": str(limit), "RateLimit-Reset": str(window_s)}


def _parse_ip(text: str) -> _IP | None:
    """An address, unwrapping IPv4-mapped IPv6 and tolerating ``[v6]:port`` / ``v4:port``."""
    text = text.strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if text.startswith("["):
            host, sep, _port = text[1:].partition("]")
        else:
            host, sep, port = text.partition(":")
            if ":" in port:  # several colons: an IPv6 literal that failed to parse, not a port
                return None
        if not sep:
            return None
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=64)
def _networks(trusted: tuple[str, ...]) -> tuple[_Net, ...]:
    """Parsed once per distinct setting. Entries that are not addresses or CIDRs are
    ignored rather than failing requests (``Settings`` is the place to reject them)."""
    nets: list[_Net] = []
    for entry in trusted:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return tuple(nets)


def _is_trusted(ip: _IP, nets: tuple[_Net, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in nets)


def _bucket(ip: _IP) -> str:
    """The key an address counts under: itself for IPv4, its /64 for IPv6, the smallest
    block a single subscriber is given (RFC 6177), so one holder cannot mint a bucket per
    address of its block."""
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@header_cache(maxsize=4096)
def _client_key(peer: str, forwarded_for: str, trusted: tuple[str, ...]) -> str:
    peer_ip = _parse_ip(peer)
    if peer_ip is None:
        return peer  # a unix socket path or similar: nothing to trust
    nets = _networks(trusted)
    if not forwarded_for or not _is_trusted(peer_ip, nets):
        return _bucket(peer_ip)
    candidate = peer_ip
    for entry in reversed(forwarded_for.split(",")):
        if not entry.strip():
            continue  # empty list elements are legal and mean nothing
        ip = _parse_ip(entry)
        if ip is None:
            break  # garbage: nothing left of it can be believed
        candidate = ip
        if not _is_trusted(ip, nets):
            return _bucket(ip)
    return _bucket(candidate)


def client_key(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[str]) -> str:
    """Who to count a request against.

    The socket peer, unless the peer is a trusted proxy: then ``X-Forwarded-For`` is read
    right to left (each proxy appends the address it saw), skipping trusted proxies, and
    the first untrusted address is the client. All trusted → the leftmost. An entry that
    is not an address stops the walk at the last address before it, since anything
    further left may have been written by the client. ``forwarded_for`` is every
    ``X-Forwarded-For`` line of the request in order: several lines are one list (RFC 9110
    §5.3), and a proxy that adds its own line must not hide the one before it.
    An IPv6 client counts by its /64.
    """
    if not peer:
        return "unknown"
    return _client_key(peer, ",".join(forwarded_for), tuple(trusted))

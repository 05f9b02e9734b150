"""One request checked against its scenario's expectations: status, headers and body.

Made before and after every cell, so a number is never reported for a server that answered
wrongly, and with ``http.client`` so nothing decodes the body behind the check's back: the
check decodes the declared ``Content-Encoding`` itself.
"""

from __future__ import annotations

import gzip
import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis

from common import keys
from lab.scenarios import Check, Scenario

__all__ = ["CheckResult", "check_once", "evaluate", "prime"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    status: int | None
    problems: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0
    body_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "problems": self.problems,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "body_bytes": self.body_bytes,
        }


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding in {"gzip", "x-gzip"}:
        return gzip.decompress(body)
    if encoding == "br":
        import brotli

        return bytes(brotli.decompress(body))
    if encoding == "zstd":
        import zstandard

        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(body))
    raise ValueError(f"unknown content coding {encoding!r}")


def evaluate(scenario: Scenario, status: int, headers: dict[str, str], body: bytes) -> list[str]:
    """Every way the response falls short of the scenario (empty: it is correct).
    ``headers`` has lower-case names."""
    problems: list[str] = []
    if status not in scenario.expect:
        problems.append(f"status {status}, expected {'/'.join(map(str, scenario.expect))}")
    check: Check = scenario.check
    if check.content_type is not None:
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != check.content_type.lower():
            problems.append(f"content-type {media or 'missing'!r}, expected {check.content_type!r}")
    for name, value in check.headers.items():
        if headers.get(name) != value:
            problems.append(f"header {name}: {headers.get(name)!r}, expected {value!r}")
    problems += [f"header {name} missing" for name in check.headers_present if name not in headers]
    if check.encoding is not None:
        coding = headers.get("content-encoding", "")
        if coding != check.encoding:
            problems.append(
                f"content-encoding {coding or 'missing'!r}, expected {check.encoding!r}"
            )
            return problems
        try:
            body = _decode(body, coding)
        except Exception as exc:  # any decoder error means a broken body
            problems.append(f"body does not decode as {coding}: {exc}")
            return problems
    if check.body_contains is not None and check.body_contains.encode() not in body:
        problems.append(f"body lacks {check.body_contains!r}")
    if check.ndjson_lines is not None:
        lines = [line for line in body.split(b"\n") if line.strip()]
        if len(lines) != check.ndjson_lines:
            problems.append(f"{len(lines)} NDJSON lines, expected {check.ndjson_lines}")
        else:
            try:
                json.loads(lines[-1])
            except ValueError:
                problems.append("the last NDJSON line is not JSON")
    if check.json_keys or check.json_length is not None or check.json_lengths:
        problems += _json_problems(check, body)
    return problems


def _json_problems(check: Check, body: bytes) -> list[str]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        return [f"body is not JSON: {exc}"]
    problems: list[str] = []
    if check.json_length is not None and (
        not isinstance(doc, list) or len(doc) != check.json_length
    ):
        size = len(doc) if isinstance(doc, list) else type(doc).__name__
        problems.append(f"JSON array of {size}, expected {check.json_length} elements")
    if check.json_keys or check.json_lengths:
        if not isinstance(doc, dict):
            return [*problems, f"JSON {type(doc).__name__}, expected an object"]
        problems += [f"JSON key {k!r} missing" for k in check.json_keys if k not in doc]
        for key, size in check.json_lengths.items():
            value = doc.get(key)
            if not isinstance(value, list) or len(value) != size:
                got = len(value) if isinstance(value, list) else type(value).__name__
                problems.append(f"JSON {key!r}: {got}, expected {size} elements")
    return problems


def check_once(base_url: str, scenario: Scenario, *, timeout_s: float = 30.0) -> CheckResult:
    """Send the scenario's request once (``{id}`` = the low end of its range) and check it."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s
    )
    started = time.perf_counter()
    try:
        body_bytes = scenario.body.encode() if scenario.body is not None else None
        conn.request(
            scenario.method, scenario.sample_path(), body=body_bytes, headers=scenario.headers
        )
        resp = conn.getresponse()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        status = resp.status
    except (OSError, http.client.HTTPException) as exc:
        return CheckResult(
            False, None, [f"request failed: {exc!r}"], (time.perf_counter() - started) * 1000
        )
    finally:
        conn.close()
    elapsed = (time.perf_counter() - started) * 1000
    problems = evaluate(scenario, status, headers, body)
    return CheckResult(not problems, status, problems, elapsed, len(body))


def forget_cached(redis_url: str, scenario: Scenario) -> int:
    """Drop the item cache entries of the scenario's id range before it is primed (every
    scenario with ``prime`` reads ``/cached/items/{id}``; tests/bench/test_checks.py keeps
    it so). Priming then stores every entry afresh, with a whole TTL ahead of it; without
    this, an id that an earlier cell cached answers HIT at priming and can expire in the
    middle of this cell (seen: a MISS in the check before the load, 185 MISSes during it).
    Returns how many entries were dropped."""
    if scenario.ids is None:
        return 0
    low, high = scenario.ids
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return int(client.delete(*(keys.item_key(i) for i in range(low, high + 1))))
    finally:
        client.close()


def prime(base_url: str, scenario: Scenario, *, timeout_s: float = 30.0) -> int:
    """Request every path of the scenario's id range once, on one keep-alive connection
    (fills a cache before a hit-path cell). Returns how many answered with an expected
    status."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s
    )
    body = scenario.body.encode() if scenario.body is not None else None
    answered = 0
    try:
        for path in scenario.paths():
            conn.request(scenario.method, path, body=body, headers=scenario.headers)
            resp = conn.getresponse()
            resp.read()
            answered += resp.status in scenario.expect
    except (OSError, http.client.HTTPException):
        pass  # the checks and the load run will say what is wrong
    finally:
        conn.close()
    return answered

"""The SPEC rules every response must meet, as pure functions over status, headers and body.

Kept free of pytest and of any HTTP client so the benchmark harness can apply the same checks
to what it sees. Each function returns a list of violations (empty when all is well), each
naming its SPEC section.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

__all__ = [
    "OTHER_SLUGS",
    "PROBLEM_MEDIA_TYPE",
    "SLUGS",
    "common_violations",
    "cpu_result",
    "etag_of",
    "header_tokens",
    "media_type",
    "problem_violations",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"

# SPEC §2.1: the problem type slug of every status the contract uses. Written from the SPEC,
# not imported from common.problems: a black-box suite that read the implementation's table
# could not catch a wrong slug in it.
SLUGS: Mapping[int, str] = {
    400: "malformed-json",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation",
    429: "rate-limited",
    500: "internal",
    502: "upstream-error",
    503: "backend-unavailable",
    504: "upstream-timeout",
}
# Statuses whose problems may carry another slug besides SLUGS' (SPEC §2.1).
OTHER_SLUGS: Mapping[int, tuple[str, ...]] = {
    422: ("idempotency-key-reused",),
    503: ("overloaded",),
}

LOC_SOURCES = frozenset({"path", "query", "header", "body"})
_SERVER_TIMING = re.compile(r"(?:^|,)\s*app\s*;\s*dur=(\d+(?:\.\d*)?|\.\d+)(?:\s*(?:;|,|$))")


def media_type(content_type: str | None) -> str:
    """``text/html; charset=utf-8`` → ``text/html``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def header_tokens(values: Iterable[str]) -> set[str]:
    """All comma-separated tokens of a header that may repeat (``Vary``, ``Allow``), lowered."""
    return {tok.strip().lower() for value in values for tok in value.split(",") if tok.strip()}


def common_violations(status: int, headers: Mapping[str, str] | Any) -> list[str]:
    """SPEC §2.2 and §2.3's Vary rule, for any response (``headers`` is case-insensitive and
    supports ``get_list``, as httpx's ``Headers``)."""
    problems = []
    timing = headers.get("server-timing")
    if timing is None:
        problems.append("SPEC §2.2: no Server-Timing header")
    elif not _SERVER_TIMING.search(timing):
        problems.append(f"SPEC §2.2: Server-Timing {timing!r} has no 'app;dur=<ms>' metric")
    if not headers.get("server"):
        problems.append("SPEC §2.2: no Server header")
    if not headers.get("date"):
        problems.append("SPEC §2.2: no Date header")
    # A 204/304 (and 1xx) has no body; its framing is the status code (RFC 9112 §6.3), so
    # Content-Length/Transfer-Encoding are not required there.
    if status not in (204, 304) and status >= 200:
        te = header_tokens(headers.get_list("transfer-encoding"))
        if headers.get("content-length") is None and "chunked" not in te:
            problems.append("SPEC §2.2: neither Content-Length nor Transfer-Encoding: chunked")
    if media_type(headers.get("content-type")) != "text/event-stream":
        vary = header_tokens(headers.get_list("vary"))
        if "accept-encoding" not in vary and "*" not in vary:
            problems.append(f"SPEC §2.3: Vary {sorted(vary)} lacks Accept-Encoding")
    encodings = header_tokens(headers.get_list("content-encoding"))
    if len(encodings) > 1:
        problems.append(f"SPEC §2.3: double-encoded body, Content-Encoding {sorted(encodings)}")
    return problems


def problem_violations(status: int, headers: Mapping[str, str] | Any, body: bytes) -> list[str]:
    """SPEC §2.1: an error response is an RFC 9457 problem with the lab's type and title."""
    ctype = media_type(headers.get("content-type"))
    if ctype != PROBLEM_MEDIA_TYPE:
        return [
            f"SPEC §2.1: error {status} has Content-Type {ctype!r}, not {PROBLEM_MEDIA_TYPE}"
            f" (body {body[:200]!r})"
        ]
    try:
        doc = json.loads(body)
    except ValueError:
        return [f"SPEC §2.1: problem body is not JSON: {body[:200]!r}"]
    if not isinstance(doc, dict):
        return [f"SPEC §2.1: problem body is not an object: {doc!r}"]
    problems = []
    for key, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
        if not isinstance(doc.get(key), kind) or isinstance(doc.get(key), bool):
            problems.append(
                f"SPEC §2.1: problem member {key!r} missing or not {kind.__name__}: "
                f"{doc.get(key)!r}"
            )
    if doc.get("status") != status:
        problems.append(f"SPEC §2.1: problem status {doc.get('status')!r} != HTTP {status}")
    slugs = (SLUGS[status], *OTHER_SLUGS.get(status, ())) if status in SLUGS else ()
    if slugs and doc.get("type") not in {f"urn:lab:problem:{slug}" for slug in slugs}:
        want = " or ".join(f"urn:lab:problem:{slug}" for slug in slugs)
        problems.append(f"SPEC §2.1: problem type {doc.get('type')!r} != {want}")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = None
    if phrase and doc.get("title") != phrase:
        problems.append(f"SPEC §2.1: problem title {doc.get('title')!r} != {phrase!r}")
    if status == 422 and doc.get("type") == f"urn:lab:problem:{SLUGS[422]}":
        errors = doc.get("errors")
        if not isinstance(errors, list) or not errors:
            problems.append(f"SPEC §2.1: 422 without a non-empty errors list: {errors!r}")
        else:
            for err in errors:
                loc = err.get("loc") if isinstance(err, dict) else None
                if (
                    not isinstance(loc, list)
                    or not loc
                    or loc[0] not in LOC_SOURCES
                    or not isinstance(err.get("msg"), str)
                ):
                    problems.append(
                        f"SPEC §2.1: 422 error entry {err!r} is not "
                        "{loc: [path|query|header|body, ...], msg: str}"
                    )
    return problems


def cpu_result(n: int) -> int:
    """SPEC §3.14: x = (x * 31 + i) % 1000000007 for i in 0..n-1 from x = 0."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1_000_000_007
    return x


def etag_of(body: bytes) -> str:
    """SPEC §3.6: the strong ETag of a body, ``"<32 hex of blake2b-128>"``."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'

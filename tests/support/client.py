"""An httpx client that checks every response against the SPEC's common rules.

Every request made through :class:`LabClient` fails the test at once when the response breaks
SPEC §2 (headers, problem shape), is a 500, is another 5xx the test did not say it expects, or
carries a stack trace. Tests then assert only what their own section adds.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from . import codecs, rules

__all__ = ["TLS", "LabClient", "Raw", "RuleViolation"]

# The suite talks plain HTTP to loopback, and httpx loads the CA bundle again for every client
# or transport it makes unless given a context (about 50 ms of CPU each, over a thousand times
# a run): every client in the suite takes this one.
TLS = ssl.create_default_context()


class RuleViolation(AssertionError):
    """A response broke one of the SPEC's rules for every response."""


@dataclass(frozen=True)
class Raw:
    """A response read without httpx's decoding: ``wire`` as sent, ``body`` decoded by us."""

    response: httpx.Response
    wire: bytes
    body: bytes

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers


def _describe(resp: httpx.Response, body: bytes | None) -> str:
    req = resp.request
    shown = "" if body is None else f"\n  body: {body[:500]!r}"
    return f"{req.method} {req.url} → {resp.status_code}{shown}"


def check(resp: httpx.Response, body: bytes | None, allow: Collection[int] = ()) -> None:
    """Apply the rules to a response (``body`` decoded, or ``None`` if not read yet)."""
    problems = []
    status = resp.status_code
    if status == 500:
        problems.append("SPEC §2.1: a 500 (the suite fails on any 500)")
    elif status >= 500 and status not in allow:
        problems.append(f"unexpected {status} (this test expects only {sorted(allow) or 'no 5xx'})")
    problems += rules.common_violations(status, resp.headers)
    if body is not None:
        if b"Traceback" in body:
            problems.append("SPEC §2.1: the body contains a stack trace")
        if status >= 400:
            problems += rules.problem_violations(status, resp.headers, body)
    if problems:
        raise RuleViolation("; ".join(problems) + "\n  " + _describe(resp, body))


class LabClient:
    """A checking client for one server (``base_url``), optionally from a given local address
    (``127.0.0.x``) so that limiter tests can be distinct clients."""

    def __init__(
        self,
        base_url: str,
        *,
        local_address: str | None = None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        transport = (
            httpx.HTTPTransport(local_address=local_address, verify=TLS) if local_address else None
        )
        self.base_url = base_url
        self.http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers=headers,
            follow_redirects=False,
            verify=TLS,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LabClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(
        self, method: str, url: str, omit: Iterable[str], kwargs: dict[str, Any]
    ) -> httpx.Request:
        request = self.http.build_request(method, url, **kwargs)
        for name in omit:
            if name in request.headers:
                del request.headers[name]
        return request

    def request(
        self,
        method: str,
        url: str,
        *,
        allow: Collection[int] = (),
        omit: Iterable[str] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """A request whose body httpx decodes; checked before it is returned."""
        resp = self.http.send(self._build(method, url, omit, kwargs))
        check(resp, resp.content, allow)
        return resp

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        allow: Collection[int] = (),
        omit: Iterable[str] = (),
        **kwargs: Any,
    ) -> Iterator[httpx.Response]:
        """A streamed response, its head checked; the caller reads it (``iter_raw``)."""
        resp = self.http.send(self._build(method, url, omit, kwargs), stream=True)
        try:
            check(resp, None, allow)
            yield resp
        finally:
            resp.close()

    def raw(
        self,
        method: str,
        url: str,
        *,
        allow: Collection[int] = (),
        omit: Iterable[str] = (),
        **kwargs: Any,
    ) -> Raw:
        """The whole response as sent (``wire``) and as decoded by the test (``body``)."""
        with self.stream(method, url, allow=allow, omit=omit, **kwargs) as resp:
            wire = b"".join(resp.iter_raw())
        codings = rules.header_tokens(resp.headers.get_list("content-encoding"))
        body = codecs.decode(wire, next(iter(codings)) if len(codings) == 1 else None)
        check(resp, body, allow)
        return Raw(resp, wire, body)

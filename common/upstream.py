"""One synchronous call to the upstream service of SPEC §3.12 with httpx: the sync twin's
fan-out call, and the async stack's ``LAB_UPSTREAM_CLIENT=blocking`` one (SPEC §6)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

__all__ = ["upstream_call"]


def upstream_call(
    http: httpx.Client, url: str, i: int, delay_ms: int, timeout: httpx.Timeout
) -> dict[str, Any] | str:
    """Call i: the upstream body, or the error kind (SPEC §3.12)."""
    try:
        resp = http.get(url, params={"i": i, "delay_ms": delay_ms}, timeout=timeout)
        if resp.status_code != 200:
            return f"status {resp.status_code}"
        body: dict[str, Any] = orjson.loads(resp.content)
        return body
    except httpx.TimeoutException:
        return "timeout"
    except (httpx.HTTPError, OSError, ValueError):
        return "connection"

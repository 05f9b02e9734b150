"""Turning fetched data into replies: the part of every endpoint that is not I/O.

Both the async service (asyncpg, redis.asyncio) and Flask's synchronous twin (psycopg,
redis-py) fetch rows and then call these functions, so the two cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from . import formats, httpcache, idempotency, items, negotiation
from .items import Row, dump, item_dict
from .problems import Problem, backend_unavailable, not_acceptable, not_found
from .reply import JSON, Reply

__all__ = [
    "aggregate_reply",
    "batch_reply",
    "cached_item_reply",
    "created_item_reply",
    "health_reply",
    "item_reply",
    "page_reply",
    "products_media_type",
    "products_reply",
    "report_reply",
    "stream_media_type",
    "task_accepted_reply",
    "task_reply",
    "whole_stream_reply",
]


def item_reply(row: Row | None) -> Reply:
    if row is None:
        raise not_found("No item with that id.")
    return Reply(dump(item_dict(row)))


def page_reply(
    rows: Sequence[Row], limit: int, category: str | None, *, offset: int | None = None
) -> Reply:
    """Rows were fetched with ``limit + 1`` so the extra row tells whether a next page exists.
    ``offset``: the page was read with ``OFFSET offset`` (``LAB_PAGINATION=offset``), so the
    next page starts ``limit`` rows further on instead of after the last id."""
    page = rows[:limit]
    next_url = None
    if len(rows) > limit:
        after = page[-1][0] if offset is None else offset + limit
        query: dict[str, Any] = {"limit": limit, "after": after}
        if category is not None:
            query["category"] = category
        next_url = "/items?" + urlencode(query)
    return Reply(dump({"items": [item_dict(r) for r in page], "next": next_url}))


def batch_reply(rows: Iterable[Row], ids: Sequence[int]) -> Reply:
    by_id = {row[0]: row for row in rows}
    return Reply(dump({"items": [item_dict(by_id[i]) for i in ids if i in by_id]}))


def cached_item_reply(
    body: bytes,
    *,
    ttl_s: int,
    x_cache: str,
    if_none_match: str | None,
    validators: bool = True,
) -> Reply:
    """``validators=False`` (``LAB_HTTP_CACHE=off``): no ETag and If-None-Match ignored, what
    an app without validators does; Cache-Control stays."""
    if not validators:
        return Reply(body, headers=httpcache.cache_headers(None, ttl_s, x_cache))
    etag = httpcache.etag_for(body)
    headers = httpcache.cache_headers(etag, ttl_s, x_cache)
    if httpcache.if_none_match(if_none_match, etag):
        return Reply(b"", status=304, headers=headers)
    return Reply(body, headers=headers)


def item_body(row: Row | None) -> bytes | None:
    """The exact bytes cached for an item (None: no such item, nothing cached)."""
    return None if row is None else dump(item_dict(row))


def report_reply(rows: Sequence[Row]) -> Reply:
    return Reply(dump({"rows": len(rows), "items": [item_dict(r) for r in rows]}))


def products_media_type(accept: str | None) -> str:
    """Negotiate before any I/O, so a 406 costs no query."""
    chosen = negotiation.best_media_type(accept, formats.PRODUCT_TYPES)
    if chosen is None:
        raise not_acceptable(formats.PRODUCT_TYPES)
    return chosen


def products_reply(rows: Sequence[Row], media_type: str) -> Reply:
    body = formats.render_products([item_dict(r) for r in rows], media_type)
    return Reply(
        body, media_type=formats.content_type_header(media_type), headers={"Vary": "Accept"}
    )


def stream_media_type(accept: str | None) -> str:
    chosen = negotiation.best_media_type(accept, formats.STREAM_TYPES)
    if chosen is None:
        raise not_acceptable(formats.STREAM_TYPES)
    return chosen


def whole_stream_reply(rows: Sequence[Row], fmt: formats.StreamFormat) -> Reply:
    """``LAB_STREAMING=off``: the bytes ``/stream/items`` streams, built whole in memory and
    sent with a Content-Length (one batch frames exactly as many do)."""
    body = fmt.head() + fmt.batch([item_dict(r) for r in rows]) + fmt.tail()
    return Reply(
        body, media_type=formats.content_type_header(fmt.media_type), headers={"Vary": "Accept"}
    )


def aggregate_reply(outcomes: Sequence[dict[str, Any] | str], started: float) -> Reply:
    """``outcomes[i]`` is the upstream body of call i, or the error kind as a string."""
    results = [o for o in outcomes if isinstance(o, dict)]
    errors = [{"i": i, "error": o} for i, o in enumerate(outcomes) if isinstance(o, str)]
    elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
    if not results:
        timeouts = all(e["error"] == "timeout" for e in errors)
        raise Problem(
            504 if timeouts else 502,
            f"All {len(errors)} upstream calls failed.",
            extra={"errors": errors, "elapsed_ms": elapsed_ms},
        )
    return Reply(dump({"results": results, "errors": errors, "elapsed_ms": elapsed_ms}))


def created_item_reply(row: Row, *, replayed: bool = False) -> Reply:
    """201 with the stored row; ``replayed``: the same answer again for a repeated
    ``Idempotency-Key``, saying so in a header."""
    headers = {"Location": f"/items/{row[0]}"}
    if replayed:
        headers[idempotency.REPLAYED_HEADER] = "true"
    return Reply(dump(item_dict(row)), status=201, headers=headers)


def task_accepted_reply(task_id: str) -> Reply:
    return Reply(
        dump({"id": task_id, "status": "queued"}),
        status=202,
        headers={"Location": f"/tasks/{task_id}"},
    )


def task_state(task_id: str, spec: items.TaskIn) -> dict[str, str]:
    """The Redis hash a new task starts with."""
    return {
        "id": task_id,
        "status": "queued",
        "created_at": _now_iso(),
        "n": str(spec.n),
        "delay_ms": str(spec.delay_ms),
    }


def task_reply(state: Mapping[str, str]) -> Reply:
    if not state:
        raise not_found("No task with that id.")
    body: dict[str, Any] = {
        "id": state["id"],
        "status": state["status"],
        "created_at": state["created_at"],
    }
    if "result" in state:
        body["result"] = {"n": int(state["n"]), "result": int(state["result"])}
    if "error" in state:
        body["error"] = state["error"]
    return Reply(dump(body))


def health_reply(db_ok: bool, cache_ok: bool) -> Reply:
    parts = {"db": "ok" if db_ok else "down", "cache": "ok" if cache_ok else "down"}
    if db_ok and cache_ok:
        return Reply(dump({"status": "ok", **parts}))
    failing = " and ".join(name for name, state in parts.items() if state == "down")
    raise backend_unavailable(failing, **parts)


def cpu_reply(n: int, result: int) -> Reply:
    return Reply(dump({"n": n, "result": result}))


def hello_json() -> Reply:
    """TechEmpower's /json: the object is built and serialised on every request (their rule;
    a pre-encoded constant would measure nothing)."""
    return Reply(dump({"message": "Hello, World!"}))


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(dump(value), JSON, status)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

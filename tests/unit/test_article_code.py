"""Bugs in the articles' own code (docs/claims.md), each shown on a faithful transcription
of the article's snippet next to what the lab does instead.

The snippets are copied from the articles in ../shared/seeds/ with only what is needed to
run them (imports, a Redis client); where the article used Redis, so do these tests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections import defaultdict
from functools import lru_cache
from typing import Any

import httpx
import pytest

from common import negotiation, ratelimit

pytestmark = pytest.mark.services

# -- 003: "Rate Limiting and Request Throttling" (sliding window on a sorted set) ---------------


def article_is_rate_limited(r: Any, identifier: str, limit: int, window: int) -> dict[str, Any]:
    """The article's ``RateLimiter.is_rate_limited`` (sync client, same Redis calls)."""
    current_time = int(time.time())
    window_start = current_time - window
    pipe = r.pipeline()
    pipe.zremrangebyscore(identifier, 0, window_start)
    pipe.zcard(identifier)
    pipe.zadd(identifier, {str(current_time): current_time})
    pipe.expire(identifier, window + 1)
    results = pipe.execute()
    current_requests = results[1]
    if current_requests > limit:
        return {"allowed": False}
    return {"allowed": True, "remaining": limit - current_requests}


def test_sliding_window_member_collapses_requests_of_one_second(redis_client: Any) -> None:
    """The ZADD member is the whole-second timestamp, so every request in one second is the
    same member: the set never holds more than one entry per second and 50 requests in a
    burst all pass a limit of 5. (It also counts refused requests: ZADD runs either way.)"""
    key = f"lab:test:article-rl:{time.time_ns()}"
    try:
        while time.time() % 1 > 0.8:  # keep the burst inside one wall-clock second
            time.sleep(0.05)
        admitted = sum(
            article_is_rate_limited(redis_client, key, 5, 3600)["allowed"] for _ in range(50)
        )
        assert admitted == 50
        assert redis_client.zcard(key) == 1
    finally:
        redis_client.delete(key)


def test_the_labs_counter_admits_exactly_the_limit(redis_client: Any) -> None:
    key = f"lab:test:lab-rl:{time.time_ns()}"
    script = redis_client.register_script(ratelimit.LUA_SOURCE)
    try:
        decisions = [
            ratelimit.decide(*script(keys=[key], args=[5, 3_600_000]), 5) for _ in range(50)
        ]
        assert sum(d.allowed for d in decisions) == 5
        assert min(d.remaining for d in decisions) == 0
    finally:
        redis_client.delete(key)


# -- 000: the in-process rate limiter ("defaultdict(list)") ------------------------------------

request_counts: defaultdict[str, list[float]] = defaultdict(list)


def article_rate_limit(user_id: str, limit: int, window: float) -> bool:
    now = time.time()
    request_counts[user_id] = [t for t in request_counts[user_id] if t > now - window]
    if len(request_counts[user_id]) >= limit:
        return False
    request_counts[user_id].append(now)
    return True


def test_in_process_limiter_is_per_worker() -> None:
    """Each worker process has its own ``request_counts``: with N workers a client gets N x
    the limit (simulated with two copies of the module state), and the lists of clients that
    never come back are never deleted. The lab counts in Redis, shared by every worker."""
    worker_a: defaultdict[str, list[float]] = defaultdict(list)
    worker_b: defaultdict[str, list[float]] = defaultdict(list)
    admitted = 0
    for i in range(20):
        state = worker_a if i % 2 else worker_b  # the kernel spreads connections over workers
        request_counts.clear()
        request_counts.update(state)
        admitted += article_rate_limit("client", 5, 60)
        state.clear()
        state.update(request_counts)
    assert admitted == 10  # twice the limit of 5
    request_counts.clear()


# -- 003: "Response Compression": Content-Encoding without the encoding ------------------------


def article_create_optimized_response(
    data: dict[str, Any], threshold: int = 10_000
) -> tuple[dict[str, str], bytes]:
    """The article's ``create_optimized_response``: headers and body of its JSONResponse."""
    body = json.dumps(data).encode()
    if len(body) > threshold:
        return {"content-encoding": "gzip", "content-type": "application/json"}, body
    return {"content-type": "application/json"}, body


def test_gzip_header_on_an_uncompressed_body_breaks_clients() -> None:
    large = {
        "records": [{"id": i, "description": "Detailed description " * 10} for i in range(1000)]
    }
    headers, body = article_create_optimized_response(large)
    assert headers["content-encoding"] == "gzip"
    with pytest.raises(httpx.DecodingError, match="incorrect header check"):
        httpx.Response(200, headers=headers, content=body).read()
    # What the header promises, and what the lab's middleware sends:
    fixed = httpx.Response(200, headers=headers, content=gzip.compress(body))
    assert fixed.json() == large and len(gzip.compress(body)) < len(body) / 5


# -- 003: "Content Negotiation": the Accept parser ----------------------------------------------


def article_preferred_format(accept_header: str) -> str:
    supported = (
        "application/json",
        "application/xml",
        "application/yaml",
        "text/csv",
        "text/plain",
    )
    if not accept_header:
        return "application/json"
    accepted_types = [m.strip().split(";")[0] for m in accept_header.split(",")]
    for mime_type in accepted_types:
        if mime_type in supported:
            return mime_type
        if mime_type == "*/*":
            return "application/json"
    return "application/json"


@pytest.mark.parametrize(
    ("accept", "article", "lab"),
    [
        # q-values ignored: the client said XML only as a last resort
        ("application/xml;q=0.1, application/json", "application/xml", "application/json"),
        # q=0 means "not acceptable" (RFC 9110 §12.4.2); the article serves it anyway
        ("text/csv;q=0, application/json", "text/csv", "application/json"),
        # nothing acceptable: the article sends JSON where the RFC expects 406
        ("image/png", "application/json", None),
    ],
)
def test_accept_parser_ignores_quality_values(accept: str, article: str, lab: str | None) -> None:
    offers = ("application/json", "application/xml", "application/yaml", "text/csv")
    assert article_preferred_format(accept) == article
    assert negotiation.best_media_type(accept, offers) == lab


# -- 002: lru_cache on a remote configuration ----------------------------------------------------


def test_lru_cache_never_expires() -> None:
    """``@lru_cache`` on ``fetch_remote_config`` keeps the first answer for the life of the
    process: a change upstream is never seen (no TTL), and a failed fetch raised is retried,
    but a stale success is not. The lab's caches have TTLs (LAB_CACHE_TTL)."""
    remote = {"version": 1}

    @lru_cache(maxsize=128)
    def fetch_remote_config() -> dict[str, int]:
        return dict(remote)

    assert fetch_remote_config()["version"] == 1
    remote["version"] = 2
    assert fetch_remote_config()["version"] == 1  # stale, forever


# -- 003: the two-level CacheManager ------------------------------------------------------------


class ArticleCacheManager:
    """The article's CacheManager, local half only (Redis omitted: the bug is local)."""

    def __init__(self) -> None:
        self.local_cache: dict[str, Any] = {}
        self.local_cache_size = 1000

    def generate_cache_key(self, prefix: str, *args: Any, **kwargs: Any) -> str:
        key_data = f"{prefix}:{args}:{sorted(kwargs.items())}"
        return hashlib.md5(key_data.encode()).hexdigest()

    def get_local(self, key: str) -> Any:
        return self.local_cache.get(key)

    def set_cache(self, key: str, value: Any, expire: int = 3600) -> None:
        if len(self.local_cache) < self.local_cache_size:
            self.local_cache[key] = value


def test_local_cache_ignores_expiry_and_stops_caching_when_full() -> None:
    cache = ArticleCacheManager()
    cache.set_cache("a", 1, expire=0)  # expire is passed to Redis only
    assert cache.get_local("a") == 1  # still served locally, whatever the TTL
    for i in range(2000):
        cache.set_cache(f"k{i}", i)
    assert cache.get_local("k1998") is None  # no eviction: once full, nothing new is cached
    assert len(cache.local_cache) == 1000


# -- 000: LIMIT/OFFSET built with an f-string -----------------------------------------------------


def test_fstring_sql_pagination_takes_whatever_it_is_given() -> None:
    """``f"SELECT * FROM items LIMIT {limit} OFFSET {offset}"``: FastAPI's ``int`` annotation
    happens to stop injection here, but nothing bounds ``limit`` or ``offset`` (a client can
    ask for every row, or make the database skip millions), and the pattern breaks the day a
    parameter is a string. The lab binds parameters ($1) and validates limit 1..100."""
    limit, offset = 10**9, 10**7
    sql = f"SELECT * FROM items LIMIT {limit} OFFSET {offset}"
    assert "1000000000" in sql  # no bound
    category = "books' OR '1'='1"
    injected = f"SELECT * FROM items WHERE category = '{category}'"
    assert injected.count("'") % 2 == 0 and "OR '1'='1'" in injected

"""Every endpoint's I/O, async: fetch with asyncpg / redis.asyncio / aiohttp, then hand the
data to :mod:`common.replies`. Adapters call one function per route and render the result.

Failures of PostgreSQL become a 503 problem (:data:`database`); failures of Redis degrade as
the contract says (cache BYPASS, limiter fail-open) instead of failing the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import asyncpg
import httpx
import orjson
import redis.exceptions
from asyncpg.pool import PoolConnectionProxy

from .. import cpu as cpu_mod
from .. import formats, idempotency, keys, ratelimit, replies, sql, techempower, validation
from ..degraded import DegradedLog
from ..items import PRODUCTS_COUNT, ItemIn, TaskIn, item_dict
from ..problems import Outage, Problem, backend_unavailable, limiter_saturated, too_many_tasks
from ..redispool import PoolExhausted
from ..reply import Reply, StreamReply
from ..upstream import upstream_call
from .resources import Resources

log = logging.getLogger("lab")
degraded = DegradedLog(log)  # SPEC §3.6, §3.7 answers, one log line a second at most
T = TypeVar("T")

# What a dead or restarting PostgreSQL looks like to asyncpg.
DB_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # A connection cut mid-query by a shutting-down server can be left with its protocol
    # state half-switched; its next query raises this (asyncpg#1069, sqlalchemy#13241). Seen
    # under load by tests/reliability/test_faults_under_load.py.
    asyncpg.exceptions.InternalClientError,
    # A transaction PostgreSQL rolled back (deadlock, serialization failure): nothing was
    # stored, and a retry may succeed, which is what a 503 with Retry-After says. psycopg
    # raises these as OperationalError, already above in the sync twin.
    asyncpg.exceptions.TransactionRollbackError,
)
REDIS_DOWN: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError, TimeoutError)


database = Outage("PostgreSQL", DB_DOWN, log)  # `with database:` a failure is the 503 problem


# -- TechEmpower group (SPEC §3.1) ------------------------------------------------------


async def _world(conn: PoolConnectionProxy | asyncpg.Connection, world_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(sql.WORLD_BY_ID, world_id)
    assert row is not None, "world ids 1..10000 are all seeded"
    return row


async def db(res: Resources) -> Reply:
    with database:
        row = await res.db.fetchrow(sql.WORLD_BY_ID, techempower.random_number())
    assert row is not None, "world ids 1..10000 are all seeded"
    return replies.json_reply(techempower.world_dict(row))


async def queries(res: Resources, count: int) -> Reply:
    """One query per row, as TechEmpower requires, on one connection."""
    with database:
        async with res.db.acquire() as conn:
            rows = [await _world(conn, i) for i in techempower.random_ids(count)]
    return replies.json_reply([techempower.world_dict(r) for r in rows])


async def updates(res: Resources, count: int) -> Reply:
    ids = techempower.random_ids(count)
    with database:
        async with res.db.acquire() as conn:
            worlds = [techempower.world_dict(await _world(conn, i)) for i in ids]
            stored = techempower.new_numbers(worlds)
            await _retried_if_rolled_back(
                lambda: conn.execute(sql.WORLD_UPDATE, list(stored), list(stored.values()))
            )
    return replies.json_reply(worlds)


ROLLBACK_RETRIES = 2


async def _retried_if_rolled_back(statement: Callable[[], Awaitable[T]]) -> T:
    """PostgreSQL rolls a transaction back to break a deadlock or to keep serializability;
    nothing was stored, so the statement runs again, up to ``ROLLBACK_RETRIES`` more times,
    and past them the error is the 503 of ``DB_DOWN``. (The lab's UPDATE locks rows in id
    order and so cannot deadlock with itself; the retry covers what else may share them.)"""
    for _ in range(ROLLBACK_RETRIES):
        try:
            return await statement()
        except asyncpg.exceptions.TransactionRollbackError:
            log.warning("PostgreSQL rolled a transaction back; running it again")
    return await statement()


async def fortunes(res: Resources) -> Reply:
    with database:
        rows = await res.db.fetch(sql.FORTUNES)
    return Reply(
        techempower.render_fortunes((r[0], r[1]) for r in rows),
        media_type="text/html; charset=utf-8",
    )


# -- Items (SPEC §3.3-3.6, 3.10, 3.11, 3.13) --------------------------------------------


async def get_item(res: Resources, item_id: int) -> Reply:
    with database:
        row = await res.db.fetchrow(sql.ITEM_BY_ID, item_id)
    return replies.item_reply(row)


async def list_items(res: Resources, limit: int, after: int, category: str | None) -> Reply:
    """Keyset paging, or ``after`` as a row offset under ``LAB_PAGINATION=offset``."""
    offset = res.settings.pagination == "offset"
    args = (after, limit + 1) if category is None else (after, limit + 1, category)
    with database:
        rows = await res.db.fetch(sql.page_statement(offset, category), *args)
    return replies.page_reply(rows, limit, category, offset=after if offset else None)


async def batch_items(res: Resources, ids: list[int]) -> Reply:
    """One ``= ANY($1)`` query, or under ``LAB_BATCH_QUERY=n_plus_one`` one query per
    distinct id, in sequence on one connection: the N+1 pattern."""
    with database:
        if res.settings.batch_query == "batched":
            rows = await res.db.fetch(sql.ITEMS_BATCH, ids)
        else:
            async with res.db.acquire() as conn:
                fetched = [await conn.fetchrow(sql.ITEM_BY_ID, i) for i in dict.fromkeys(ids)]
            rows = [r for r in fetched if r is not None]
    return replies.batch_reply(rows, ids)


async def cached_item(res: Resources, item_id: int, if_none_match: str | None) -> Reply:
    """Cache-aside: Redis first, PostgreSQL on a miss; Redis down → BYPASS (SPEC §3.6).
    ``LAB_CACHE=none`` reads PostgreSQL every time (BYPASS); ``local`` asks the worker's own
    cache before Redis (SPEC §6)."""
    settings = res.settings
    ttl = settings.cache_ttl_s
    key = keys.item_key(item_id)
    local = res.local_cache

    def reply(body: bytes, x_cache: str) -> Reply:
        return replies.cached_item_reply(
            body,
            ttl_s=ttl,
            x_cache=x_cache,
            if_none_match=if_none_match,
            validators=settings.http_cache,
        )

    body: bytes | None = None
    redis_ok = settings.cache != "none"
    if local is not None and (body := local.get(key)) is not None:
        return reply(body, "HIT")
    if redis_ok:
        try:
            body = await res.redis.get(key)  # type: ignore[assignment]  # bytes: no decode_responses
        except REDIS_DOWN as exc:
            degraded("cache bypassed", exc)
            redis_ok = False
    if body is not None:
        if local is not None:
            local.put(key, body)
        return reply(body, "HIT")
    with database:
        row = await res.db.fetchrow(sql.ITEM_BY_ID, item_id)
    body = replies.item_body(row)
    if body is None:
        return replies.item_reply(None)  # raises 404; misses are not cached
    if redis_ok:
        try:
            await res.redis.set(key, body, ex=ttl)
        except REDIS_DOWN as exc:
            degraded("cache bypassed", exc)
            redis_ok = False
    if local is not None and redis_ok:
        local.put(key, body)
    return reply(body, "MISS" if redis_ok else "BYPASS")


async def report(res: Resources, rows: int) -> Reply:
    with database:
        fetched = await res.db.fetch(sql.ITEMS_FIRST, rows)
    return replies.report_reply(fetched)


async def products(res: Resources, accept: str | None) -> Reply:
    media_type = replies.products_media_type(accept)
    with database:
        rows = await res.db.fetch(sql.ITEMS_FIRST, PRODUCTS_COUNT)
    return replies.products_reply(rows, media_type)


async def create_item(res: Resources, item: ItemIn, idempotency_key: str | None = None) -> Reply:
    if idempotency_key is not None:
        return await _create_item_once(res, item, idempotency.check_key(idempotency_key))
    with database:
        row = await res.db.fetchrow(sql.ITEM_INSERT, item.name, item.category, round(item.price, 2))
    assert row is not None
    return replies.created_item_reply(row)


async def _create_item_once(res: Resources, item: ItemIn, key: str) -> Reply:
    """``POST /items`` with an ``Idempotency-Key`` (common/idempotency.py says how): reserve
    a row id, record it under the key unless the key has a record already, then insert that
    row unless it is there."""
    fingerprint = idempotency.fingerprint(item)
    with database:
        reserved = int(await res.db.fetchval(sql.ITEM_ID_RESERVE))
    redis_key = keys.idempotency_key(key)
    try:  # SET NX GET (Redis 7): the record stored, or the one already there, in one step
        existing = await res.redis.set(
            redis_key,
            idempotency.record(fingerprint, reserved),
            nx=True,
            get=True,
            ex=res.settings.idempotency_ttl_s,
        )
    except REDIS_DOWN as exc:  # without the record, a retry could store the item twice
        degraded("idempotency keys answering 503", exc)
        raise backend_unavailable("Idempotency keys (Redis)") from None
    item_id = idempotency.item_id_for(existing, fingerprint, reserved)
    args = (item.name, item.category, round(item.price, 2))
    with database:
        row = await res.db.fetchrow(sql.ITEM_INSERT_WITH_ID, item_id, *args)
        replayed = row is None
        if replayed:  # stored by an earlier request with this key
            row = await res.db.fetchrow(sql.ITEM_BY_ID, item_id)
    assert row is not None
    return replies.created_item_reply(row, replayed=replayed)


# -- Streaming (SPEC §3.8, 3.9) ---------------------------------------------------------


async def stream_items(res: Resources, count: int, accept: str | None) -> Reply | StreamReply:
    """Negotiate (406) and read the first batch (503) now: once the head is sent, an error
    can only cut the stream short. The other batches are read while sending."""
    fmt = formats.stream_format(replies.stream_media_type(accept))
    if not res.settings.streaming:  # LAB_STREAMING=off: every row, the whole body at once
        with database:
            rows = await res.db.fetch(sql.ITEMS_FIRST, count)
        return replies.whole_stream_reply(rows, fmt)
    batch = res.settings.stream_batch
    with database:
        first = await res.db.fetch(sql.ITEMS_STREAM_BATCH, 0, count, batch)
    return StreamReply(
        _item_chunks(res, first, count, fmt),
        formats.content_type_header(fmt.media_type),
        headers={"Vary": "Accept"},
    )


async def _item_chunks(
    res: Resources, rows: list[asyncpg.Record], count: int, fmt: formats.StreamFormat
) -> AsyncIterator[bytes]:
    """One batch at a time by keyset (ids after the last one sent), each read on a pool
    connection held for that query only: a client that reads slowly, or stops reading,
    holds no database connection while the server waits to write. Memory stays one batch
    deep, whatever the count."""
    batch = res.settings.stream_batch
    yield fmt.head() + fmt.batch([item_dict(r) for r in rows])
    while len(rows) == batch:
        rows = await res.db.fetch(sql.ITEMS_STREAM_BATCH, rows[-1][0], count, batch)
        if rows:
            yield fmt.batch([item_dict(r) for r in rows])
    yield fmt.tail()


def stream_events(count: int, interval_ms: int) -> StreamReply:
    validation.check_events_duration(count, interval_ms)  # 422 before the head
    return StreamReply(
        _events(count, interval_ms),
        "text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(count: int, interval_ms: int) -> AsyncIterator[bytes]:
    for seq in range(1, count + 1):
        if seq > 1 and interval_ms:
            await asyncio.sleep(interval_ms / 1000)
        yield formats.sse_event(seq, count)


# -- Rate limiting (SPEC §3.7) ----------------------------------------------------------


async def limited(res: Resources, client: str) -> Reply:
    if res.settings.limiter == "off":  # LAB_LIMITER=off: the route without its limiter
        return Reply(b'{"status":"ok"}')
    rl = res.settings.rate_limit
    try:
        count, ttl_ms = await res.ratelimit_script(
            keys=[keys.ratelimit_key(client)], args=[rl.limit, rl.window_s * 1000]
        )
    except PoolExhausted as exc:  # Redis answers, this worker is full: a flood stays out
        degraded("rate limiter refusing (503): the worker's Redis pool is full", exc)
        raise limiter_saturated() from None
    except REDIS_DOWN as exc:
        if res.settings.limiter_fail_closed:
            degraded("rate limiter failing closed (503)", exc)
            raise backend_unavailable("The rate limiter (Redis)") from None
        degraded("rate limiter failing open", exc)
        return Reply(b'{"status":"ok"}', headers=ratelimit.fail_open_headers(rl.limit, rl.window_s))
    decision = ratelimit.decide(int(count), int(ttl_ms), rl.limit)
    headers = ratelimit.headers(decision)
    if not decision.allowed:
        raise Problem(
            429, f"Rate limit of {rl.limit} requests per {rl.window_s} s exceeded.", headers=headers
        )
    return Reply(b'{"status":"ok"}', headers=headers)


# -- Fan-out (SPEC §3.12) ---------------------------------------------------------------


async def aggregate(res: Resources, n: int, delay_ms: int) -> Reply:
    if res.blocking_http is not None:
        return _aggregate_blocking(res, res.blocking_http, n, delay_ms)
    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=res.settings.upstream_timeout_ms / 1000)
    url = res.settings.upstream_url + "/work"

    async def call(i: int) -> dict[str, Any] | str:
        try:
            async with res.http.get(
                url, params={"i": i, "delay_ms": delay_ms}, timeout=timeout
            ) as resp:
                if resp.status != 200:
                    return f"status {resp.status}"
                body: dict[str, Any] = orjson.loads(await resp.read())
                return body
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, OSError, ValueError):
            return "connection"

    outcomes = await asyncio.gather(*(call(i) for i in range(n)))
    return replies.aggregate_reply(outcomes, started)


def _aggregate_blocking(res: Resources, http: httpx.Client, n: int, delay_ms: int) -> Reply:
    """``LAB_UPSTREAM_CLIENT=blocking``: the classic mistake, kept on purpose. A synchronous
    client called from the async handler makes the n calls one after another, and while each
    waits the event loop is stalled: no other request of this worker moves meanwhile."""
    started = time.perf_counter()
    timeout = httpx.Timeout(res.settings.upstream_timeout_ms / 1000)
    url = res.settings.upstream_url + "/work"
    outcomes = [upstream_call(http, url, i, delay_ms, timeout) for i in range(n)]
    return replies.aggregate_reply(outcomes, started)


# -- CPU and tasks (SPEC §3.14, 3.15) ---------------------------------------------------


async def run_cpu(res: Resources, fn: Callable[[int], T], n: int) -> T:
    """Off the event loop on the configured executor; ``inline`` blocks it (experiment)."""
    if res.cpu is None:
        return fn(n)
    return await asyncio.get_running_loop().run_in_executor(res.cpu, fn, n)


async def cpu(res: Resources, n: int) -> Reply:
    return replies.cpu_reply(n, await run_cpu(res, cpu_mod.spin, n))


async def create_task(res: Resources, spec: TaskIn) -> tuple[Reply, str]:
    """Record the task in Redis, then let the framework run :func:`run_task` after replying.
    Past ``LAB_MAX_TASKS`` unfinished tasks in this worker, none is accepted (503)."""
    if not res.task_slots.admit():
        raise too_many_tasks(res.task_slots.limit)
    task_id = secrets.token_hex(16)
    try:
        async with res.redis.pipeline(transaction=True) as pipe:
            # redis' stubs type mapping keys invariantly (str | bytes | ...), hence the ignore.
            state = replies.task_state(task_id, spec)
            pipe.hset(keys.task_key(task_id), mapping=state)  # type: ignore[arg-type]
            pipe.expire(keys.task_key(task_id), TASK_TTL_S)
            await pipe.execute()
    except REDIS_DOWN as exc:
        res.task_slots.release()
        degraded("task store answering 503", exc)
        raise backend_unavailable("The task store (Redis)") from None
    return replies.task_accepted_reply(task_id), task_id


TASK_TTL_S = 3600


async def run_task(res: Resources, task_id: str, spec: TaskIn) -> None:
    """Run an accepted task (its slot, taken by :func:`create_task`, is freed at the end)."""
    try:
        await _run_task(res, task_id, spec)
    finally:
        res.task_slots.release()


async def _run_task(res: Resources, task_id: str, spec: TaskIn) -> None:
    key = keys.task_key(task_id)
    try:
        await res.redis.hset(key, "status", "running")
        if spec.delay_ms:
            await asyncio.sleep(spec.delay_ms / 1000)
        result = await run_cpu(res, cpu_mod.spin, spec.n)
        await res.redis.hset(key, mapping={"status": "done", "result": str(result)})
    except asyncio.CancelledError:  # shutdown: say so rather than stay "running" for an hour
        with contextlib.suppress(*REDIS_DOWN):
            await res.redis.hset(key, mapping={"status": "failed", "error": "cancelled"})
        raise
    except Exception as exc:  # a task's failure is its state, not a crash of the worker
        log.exception("task %s failed", task_id)
        with contextlib.suppress(*REDIS_DOWN):
            await res.redis.hset(key, mapping={"status": "failed", "error": type(exc).__name__})


async def get_task(res: Resources, task_id: str) -> Reply:
    try:
        state = await res.redis.hgetall(keys.task_key(task_id))
    except REDIS_DOWN as exc:
        degraded("task store answering 503", exc)
        raise backend_unavailable("The task store (Redis)") from None
    return replies.task_reply({_text(k): _text(v) for k, v in state.items()})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- Health (SPEC §3.16) ----------------------------------------------------------------


async def health(res: Resources) -> Reply:
    async def db_ok() -> bool:
        try:
            await res.db.fetchval(sql.PING, timeout=1)
            return True
        except DB_DOWN:
            return False

    async def cache_ok() -> bool:
        try:
            return bool(await res.redis.ping())
        except REDIS_DOWN:
            return False

    db_state, cache_state = await asyncio.gather(db_ok(), cache_ok())
    return replies.health_reply(db_state, cache_state)

"""Every endpoint's I/O, synchronous: fetch with psycopg / redis-py / httpx, then hand the
data to :mod:`common.replies`. The twin of :mod:`common.aio.service`, function for function,
so the two can be read side by side; the WSGI adapter calls one function per route.

Failures of PostgreSQL become a 503 problem (:func:`database`); failures of Redis degrade as
the contract says (cache BYPASS, limiter fail-open) instead of failing the request.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import httpx
import psycopg
import redis.exceptions
from psycopg.rows import TupleRow
from psycopg_pool import PoolTimeout
from redis.typing import EncodableT, FieldT

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

# What a dead or restarting PostgreSQL looks like to psycopg and its pool (PoolTimeout: no
# connection could be had within LAB_DB_TIMEOUT_MS, which is what an outage looks like).
DB_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    psycopg.OperationalError,
    PoolTimeout,
)
REDIS_DOWN: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError, TimeoutError)


database = Outage("PostgreSQL", DB_DOWN, log)  # `with database:` a failure is the 503 problem


class Statement:
    """A statement of :mod:`common.sql` in psycopg's ``%s`` style. ``params`` takes the
    arguments in ``$n`` order, as asyncpg does, and puts them in placeholder order
    (``ITEMS_PAGE_IN_CATEGORY`` writes ``$1 … $3 … $2``)."""

    __slots__ = ("order", "text")

    def __init__(self, statement: str) -> None:
        self.text = sql.psycopg_style(statement)
        self.order = tuple(sql.placeholder_order(statement))

    def params(self, *args: Any) -> tuple[Any, ...]:
        return tuple(args[i] for i in self.order)


WORLD_BY_ID = Statement(sql.WORLD_BY_ID)
WORLD_UPDATE = Statement(sql.WORLD_UPDATE)
FORTUNES = Statement(sql.FORTUNES)
ITEM_BY_ID = Statement(sql.ITEM_BY_ID)
# GET /items: keyed by the text sql.page_statement picks for the paging mode.
PAGE_STATEMENTS = {
    text: Statement(text)
    for text in (
        sql.ITEMS_PAGE,
        sql.ITEMS_PAGE_IN_CATEGORY,
        sql.ITEMS_PAGE_OFFSET,
        sql.ITEMS_PAGE_OFFSET_IN_CATEGORY,
    )
}
ITEMS_BATCH = Statement(sql.ITEMS_BATCH)
ITEMS_FIRST = Statement(sql.ITEMS_FIRST)
ITEMS_STREAM_BATCH = Statement(sql.ITEMS_STREAM_BATCH)
ITEM_INSERT = Statement(sql.ITEM_INSERT)
ITEM_ID_RESERVE = Statement(sql.ITEM_ID_RESERVE)
ITEM_INSERT_WITH_ID = Statement(sql.ITEM_INSERT_WITH_ID)
PING = Statement(sql.PING)


def _fetchrow(res: Resources, statement: Statement, *args: Any) -> TupleRow | None:
    with res.db.connection() as conn:
        return conn.execute(statement.text, statement.params(*args)).fetchone()


def _fetch(res: Resources, statement: Statement, *args: Any) -> list[TupleRow]:
    with res.db.connection() as conn:
        return conn.execute(statement.text, statement.params(*args)).fetchall()


# -- TechEmpower group (SPEC §3.1) ------------------------------------------------------


def db(res: Resources) -> Reply:
    with database:
        row = _fetchrow(res, WORLD_BY_ID, techempower.random_number())
    assert row is not None
    return replies.json_reply(techempower.world_dict(row))


def queries(res: Resources, count: int) -> Reply:
    """One query per row, as TechEmpower requires, on one connection."""
    with database, res.db.connection() as conn, conn.cursor() as cur:
        rows = [
            cur.execute(WORLD_BY_ID.text, (i,)).fetchone() for i in techempower.random_ids(count)
        ]
    return replies.json_reply([techempower.world_dict(r) for r in rows if r is not None])


def updates(res: Resources, count: int) -> Reply:
    ids = techempower.random_ids(count)
    with database, res.db.connection() as conn, conn.cursor() as cur:
        worlds = [
            techempower.world_dict(_one(cur.execute(WORLD_BY_ID.text, (i,)).fetchone()))
            for i in ids
        ]
        stored = techempower.new_numbers(worlds)
        args = WORLD_UPDATE.params(list(stored), list(stored.values()))
        _retried_if_rolled_back(lambda: cur.execute(WORLD_UPDATE.text, args))
    return replies.json_reply(worlds)


ROLLBACK_RETRIES = 2
# SQLSTATE class 40; psycopg derives its two common members from OperationalError, not from
# the class's own TransactionRollback.
ROLLED_BACK = (
    psycopg.errors.TransactionRollback,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


def _retried_if_rolled_back(statement: Callable[[], T]) -> T:
    """The async twin's ``_retried_if_rolled_back``: a statement PostgreSQL rolled back
    (deadlock, serialization failure) stored nothing and runs again, up to
    ``ROLLBACK_RETRIES`` more times; past them, the 503 of ``DB_DOWN``. The pool's
    connections autocommit, so each statement is its own transaction."""
    for _ in range(ROLLBACK_RETRIES):
        try:
            return statement()
        except ROLLED_BACK:
            log.warning("PostgreSQL rolled a transaction back; running it again")
    return statement()


def _one(row: TupleRow | None) -> TupleRow:
    assert row is not None  # world ids 1..10000 all exist (SPEC §1)
    return row


def fortunes(res: Resources) -> Reply:
    with database:
        rows = _fetch(res, FORTUNES)
    return Reply(
        techempower.render_fortunes((r[0], r[1]) for r in rows),
        media_type="text/html; charset=utf-8",
    )


# -- Items (SPEC §3.3-3.6, 3.10, 3.11, 3.13) --------------------------------------------


def get_item(res: Resources, item_id: int) -> Reply:
    with database:
        row = _fetchrow(res, ITEM_BY_ID, item_id)
    return replies.item_reply(row)


def list_items(res: Resources, limit: int, after: int, category: str | None) -> Reply:
    """Keyset paging, or ``after`` as a row offset under ``LAB_PAGINATION=offset``."""
    offset = res.settings.pagination == "offset"
    args = (after, limit + 1) if category is None else (after, limit + 1, category)
    with database:
        rows = _fetch(res, PAGE_STATEMENTS[sql.page_statement(offset, category)], *args)
    return replies.page_reply(rows, limit, category, offset=after if offset else None)


def batch_items(res: Resources, ids: list[int]) -> Reply:
    """One ``= ANY($1)`` query, or under ``LAB_BATCH_QUERY=n_plus_one`` one query per
    distinct id, in sequence on one connection: the N+1 pattern."""
    with database:
        if res.settings.batch_query == "batched":
            rows = _fetch(res, ITEMS_BATCH, ids)
        else:
            with res.db.connection() as conn, conn.cursor() as cur:
                fetched = [
                    cur.execute(ITEM_BY_ID.text, (i,)).fetchone() for i in dict.fromkeys(ids)
                ]
            rows = [r for r in fetched if r is not None]
    return replies.batch_reply(rows, ids)


def cached_item(res: Resources, item_id: int, if_none_match: str | None) -> Reply:
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

    cached: Any = None
    redis_ok = settings.cache != "none"
    if local is not None and (cached := local.get(key)) is not None:
        return reply(cached, "HIT")
    if redis_ok:
        try:
            cached = res.redis.get(key)
        except REDIS_DOWN as exc:
            degraded("cache bypassed", exc)
            redis_ok = False
    if isinstance(cached, bytes):
        if local is not None:
            local.put(key, cached)
        return reply(cached, "HIT")
    with database:
        row = _fetchrow(res, ITEM_BY_ID, item_id)
    body = replies.item_body(row)
    if body is None:
        return replies.item_reply(None)  # raises 404; misses are not cached
    if redis_ok:
        try:
            res.redis.set(key, body, ex=ttl)
        except REDIS_DOWN as exc:
            degraded("cache bypassed", exc)
            redis_ok = False
    if local is not None and redis_ok:
        local.put(key, body)
    return reply(body, "MISS" if redis_ok else "BYPASS")


def report(res: Resources, rows: int) -> Reply:
    with database:
        fetched = _fetch(res, ITEMS_FIRST, rows)
    return replies.report_reply(fetched)


def products(res: Resources, accept: str | None) -> Reply:
    media_type = replies.products_media_type(accept)
    with database:
        rows = _fetch(res, ITEMS_FIRST, PRODUCTS_COUNT)
    return replies.products_reply(rows, media_type)


def create_item(res: Resources, item: ItemIn, idempotency_key: str | None = None) -> Reply:
    if idempotency_key is not None:
        return _create_item_once(res, item, idempotency.check_key(idempotency_key))
    with database:
        row = _fetchrow(res, ITEM_INSERT, item.name, item.category, round(item.price, 2))
    assert row is not None
    return replies.created_item_reply(row)


def _create_item_once(res: Resources, item: ItemIn, key: str) -> Reply:
    """The async twin's ``_create_item_once``: reserve a row id, record it under the key
    unless the key has a record already, then insert that row unless it is there."""
    fingerprint = idempotency.fingerprint(item)
    with database:
        reserved = int(_one(_fetchrow(res, ITEM_ID_RESERVE))[0])
    try:  # SET NX GET (Redis 7): the record stored, or the one already there, in one step
        existing = res.redis.set(
            keys.idempotency_key(key),
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
        row = _fetchrow(res, ITEM_INSERT_WITH_ID, item_id, *args)
        replayed = row is None
        if replayed:  # stored by an earlier request with this key
            row = _fetchrow(res, ITEM_BY_ID, item_id)
    assert row is not None
    return replies.created_item_reply(row, replayed=replayed)


# -- Streaming (SPEC §3.8, 3.9) ---------------------------------------------------------


def stream_items(res: Resources, count: int, accept: str | None) -> Reply | StreamReply:
    """Negotiate (406) and read the first batch (503) now: once the head is sent, an error
    can only cut the stream short. The other batches are read while sending."""
    fmt = formats.stream_format(replies.stream_media_type(accept))
    if not res.settings.streaming:  # LAB_STREAMING=off: every row, the whole body at once
        with database:
            rows = _fetch(res, ITEMS_FIRST, count)
        return replies.whole_stream_reply(rows, fmt)
    with database:
        first = _fetch(res, ITEMS_STREAM_BATCH, 0, count, res.settings.stream_batch)
    return StreamReply(
        _item_chunks(res, first, count, fmt),
        formats.content_type_header(fmt.media_type),
        headers={"Vary": "Accept"},
    )


def _item_chunks(
    res: Resources, rows: list[TupleRow], count: int, fmt: formats.StreamFormat
) -> Iterator[bytes]:
    """One batch at a time by keyset (ids after the last one sent), each read on a pool
    connection held for that query only: a client that reads slowly, or stops reading,
    holds no database connection while the server's thread waits to write. Memory stays one
    batch deep, whatever the count."""
    batch = res.settings.stream_batch
    yield fmt.head() + fmt.batch([item_dict(r) for r in rows])
    while len(rows) == batch:
        rows = _fetch(res, ITEMS_STREAM_BATCH, rows[-1][0], count, batch)
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


def _events(count: int, interval_ms: int) -> Iterator[bytes]:
    for seq in range(1, count + 1):
        if seq > 1 and interval_ms:
            time.sleep(interval_ms / 1000)
        yield formats.sse_event(seq, count)


# -- Rate limiting (SPEC §3.7) ----------------------------------------------------------


def limited(res: Resources, client: str) -> Reply:
    if res.settings.limiter == "off":  # LAB_LIMITER=off: the route without its limiter
        return Reply(b'{"status":"ok"}')
    rl = res.settings.rate_limit
    try:
        count, ttl_ms = res.ratelimit_script(
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


def aggregate(res: Resources, n: int, delay_ms: int) -> Reply:
    started = time.perf_counter()
    # httpx times each phase (connect, write, read) separately; the upstream answers in one
    # write after the delay, so the read timeout is the per-call deadline.
    timeout = httpx.Timeout(res.settings.upstream_timeout_ms / 1000)
    url = res.settings.upstream_url + "/work"

    def call(i: int) -> dict[str, Any] | str:
        return upstream_call(res.http, url, i, delay_ms, timeout)

    # n concurrent calls on the fan-out threads; map() returns them in index order.
    outcomes: Sequence[dict[str, Any] | str] = list(res.fanout.map(call, range(n)))
    return replies.aggregate_reply(outcomes, started)


# -- CPU and tasks (SPEC §3.14, 3.15) ---------------------------------------------------


def run_cpu(res: Resources, fn: Callable[[int], T], n: int) -> T:
    """Off the request thread on the configured executor; ``inline`` runs it in place. The
    request thread waits either way: the executor bounds how many run at once (threads) or
    lets them run in parallel outside the GIL (processes)."""
    if res.cpu is None:
        return fn(n)
    return res.cpu.submit(fn, n).result()


def cpu(res: Resources, n: int) -> Reply:
    return replies.cpu_reply(n, run_cpu(res, cpu_mod.spin, n))


def create_task(res: Resources, spec: TaskIn) -> tuple[Reply, str]:
    """Record the task in Redis, then let the adapter submit :func:`run_task` to
    ``res.tasks``. Past ``LAB_MAX_TASKS`` unfinished tasks in this worker, none is accepted
    (503)."""
    if not res.task_slots.admit():
        raise too_many_tasks(res.task_slots.limit)
    task_id = secrets.token_hex(16)
    try:
        with res.redis.pipeline(transaction=True) as pipe:
            state: dict[FieldT, EncodableT] = dict(replies.task_state(task_id, spec).items())
            pipe.hset(keys.task_key(task_id), mapping=state)
            pipe.expire(keys.task_key(task_id), TASK_TTL_S)
            pipe.execute()
    except REDIS_DOWN as exc:
        res.task_slots.release()
        degraded("task store answering 503", exc)
        raise backend_unavailable("The task store (Redis)") from None
    return replies.task_accepted_reply(task_id), task_id


TASK_TTL_S = 3600


def run_task(res: Resources, task_id: str, spec: TaskIn) -> None:
    """Run an accepted task (its slot, taken by :func:`create_task`, is freed at the end)."""
    try:
        _run_task(res, task_id, spec)
    finally:
        res.task_slots.release()


def _run_task(res: Resources, task_id: str, spec: TaskIn) -> None:
    key = keys.task_key(task_id)
    try:
        res.redis.hset(key, "status", "running")
        if spec.delay_ms:
            time.sleep(spec.delay_ms / 1000)
        result = run_cpu(res, cpu_mod.spin, spec.n)
        res.redis.hset(key, mapping={"status": "done", "result": str(result)})
    except Exception as exc:  # a task's failure is its state, not a crash of the worker
        log.exception("task %s failed", task_id)
        with contextlib.suppress(*REDIS_DOWN):
            res.redis.hset(key, mapping={"status": "failed", "error": type(exc).__name__})


def get_task(res: Resources, task_id: str) -> Reply:
    try:
        state = res.redis.hgetall(keys.task_key(task_id))
    except REDIS_DOWN as exc:
        degraded("task store answering 503", exc)
        raise backend_unavailable("The task store (Redis)") from None
    return replies.task_reply({_text(k): _text(v) for k, v in state.items()})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- Health (SPEC §3.16) ----------------------------------------------------------------


def health(res: Resources) -> Reply:
    def db_ok() -> bool:
        try:
            with res.db.connection(timeout=1) as conn:
                conn.execute(PING.text)
            return True
        except DB_DOWN:
            return False

    def cache_ok() -> bool:
        try:
            return bool(res.redis.ping())
        except REDIS_DOWN:
            return False

    # Both probes at once, as the async side's gather(): an outage costs one timeout, not two.
    db_state = res.fanout.submit(db_ok)
    cache_state = cache_ok()
    return replies.health_reply(db_state.result(), cache_state)

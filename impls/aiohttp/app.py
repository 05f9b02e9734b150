"""aiohttp adapter: routing, validation and lifecycle the aiohttp way; behaviour from common/.

aiohttp has no validation layer and no dependency injection: a handler takes the ``Request``,
reads ``match_info``/``query``/``headers`` and parses them with ``common.validation`` (which
raises the lab's problems), and finds the worker's resources in typed application state
(``request.app[RESOURCES]``). Cross-cutting rules (errors, compression, ``Vary``,
``Server-Timing``) live in one decorator every route is registered with, :func:`lab_route`:
a pure-ASGI middleware such as ``common.asgi.LabMiddleware`` cannot wrap an aiohttp app, and
aiohttp's own ``@web.middleware`` costs two coroutine layers per request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from common import compression, items, negotiation, ratelimit, replies, stall, techempower
from common.accesslog import log_access
from common.admission import EXEMPT_PATHS, worker_gate
from common.aio import Resources, open_resources, service
from common.problems import (
    MAX_BODY_BYTES,
    PROBLEM_MEDIA_TYPE,
    Problem,
    internal,
    method_not_allowed,
    not_found,
    overloaded,
    payload_too_large,
)
from common.reply import Reply, StreamReply
from common.settings import Settings, check_framework, get_settings
from common.timing import server_timing
from common.validation import decode_body, int_param, optional_category, parse_ids, path_id

log = logging.getLogger("lab")

# Typed application and request state: aiohttp's answer to a DI container.
SETTINGS = web.AppKey("settings", Settings)
RESOURCES = web.AppKey("resources", Resources)
TASKS = web.AppKey("tasks", set[asyncio.Task[None]])
STARTED = web.RequestKey("started", float)

# -- Rendering ----------------------------------------------------------------------------


def render(request: web.Request, reply: Reply, started: float, settings: Settings) -> web.Response:
    """A ``Reply`` as aiohttp's ``Response``, with the lab's rules for a whole body applied on
    the way: ``Vary`` and compression (SPEC §2.3), then ``Server-Timing`` (§2.2).

    The head is built once, as one plain dict that ``web.Response`` copies into its own
    ``CIMultiDict``: every rule here is decided from the ``Reply``, so nothing reads the
    response back. Names are aiohttp's ``hdrs`` constants (``istr``, equal to the spelling
    ``common`` uses); a ``CIMultiDict`` case-folds a plain ``str`` name on every insert.
    Content-Type as a header: ``content_type=`` refuses a charset in it."""
    headers = {hdrs.CONTENT_TYPE: reply.media_type, **reply.headers}
    body = reply.body
    coding = choose_coding(request, settings, headers, reply.status, len(body))
    if coding:
        body = compression.compress_body(coding, body, settings)
    if settings.timing:
        headers[hdrs.SERVER_TIMING] = server_timing(started)
    return web.Response(body=body, status=reply.status, headers=headers)


def problem_reply(problem: Problem) -> Reply:
    return Reply(problem.body(), PROBLEM_MEDIA_TYPE, problem.status, problem.headers)


async def read_body(request: web.Request) -> bytes:
    """The body within SPEC §2.1's limit: a declared ``Content-Length`` over it is refused
    before reading; otherwise ``read()`` enforces ``client_max_size`` as the bytes arrive."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise payload_too_large()
    return await request.read()


def choose_coding(
    request: web.Request,
    settings: Settings,
    headers: MutableMapping[str, str],
    status: int,
    length: int | None,
) -> str | None:
    """SPEC §2.3 for one response: ``Vary: Accept-Encoding`` unless it is an event stream, and
    the coding to compress with (set as ``Content-Encoding``), or None to send it as is."""
    media_type = headers.get(hdrs.CONTENT_TYPE)
    if not compression.is_compressible(media_type):
        return None
    vary = headers.get(hdrs.VARY)
    headers[hdrs.VARY] = (
        "Accept-Encoding" if vary is None else compression.merge_vary(vary, "Accept-Encoding")
    )
    accept_encoding = request.headers.get(hdrs.ACCEPT_ENCODING)
    if accept_encoding is None:  # the usual request: identity, nothing more to decide
        return None
    coding = negotiation.best_encoding(accept_encoding)
    if coding is None or not compression.should_compress(
        coding=coding,
        media_type=media_type,
        status=status,
        content_encoding=headers.get(hdrs.CONTENT_ENCODING),
        length=length,
        min_size=settings.compression_min_size,
    ):
        return None
    headers[hdrs.CONTENT_ENCODING] = coding
    return coding


async def stream(request: web.Request, reply: StreamReply) -> web.StreamResponse:
    """A ``StreamReply`` as a chunked ``StreamResponse``, compressed chunk by chunk.

    aiohttp's own ``StreamResponse.enable_compression()`` knows gzip and deflate (br with an
    extra package) but not zstd, and decides by its own rules rather than SPEC §2.3, so the
    lab's encoder does it: each chunk is compressed and flushed, and written as it comes.
    """
    assert isinstance(reply.chunks, AsyncIterator)
    headers = CIMultiDict(reply.headers)
    headers[hdrs.CONTENT_TYPE] = reply.media_type
    settings = request.app[SETTINGS]
    coding = choose_coding(request, settings, headers, reply.status, None)
    encoder = compression.new_encoder(coding, settings) if coding else None
    response = web.StreamResponse(status=reply.status, headers=headers)
    response.enable_chunked_encoding()
    set_server_timing(request, response)
    await response.prepare(request)
    write_timeout = settings.write_timeout_s
    try:
        async for chunk in reply.chunks:
            data = encoder.compress(chunk) if encoder else chunk
            if data:
                await stall.within(response.write(data), write_timeout)
        if encoder:
            await response.write(encoder.finish())
        await response.write_eof()
    except stall.ClientStalled as exc:  # it stopped reading: drop it without the last chunk
        stall.abandoned(request.path, exc)
        if request.transport is not None:
            request.transport.close()
    except Exception:
        transport = request.transport
        if transport is None or transport.is_closing():
            return response  # the client went away: nobody to tell
        # The head is out, so no problem response can follow. Drop the connection without the
        # last chunk: the client sees a truncated body, never one that looks complete.
        log.exception("stream of %s failed after the response head", request.path)
        transport.close()
    return response


# -- Lifecycle ------------------------------------------------------------------------------


async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the pools when the worker starts, close them when it stops (one per process)."""
    async with open_resources(app[SETTINGS]) as resources:
        app[RESOURCES] = resources
        yield


async def background_ctx(app: web.Application) -> AsyncIterator[None]:
    """Registered after ``resources_ctx``, so cleaned up before it: leftover tasks are
    cancelled and awaited while Redis is still open."""
    yield
    tasks = app[TASKS]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_in_background(app: web.Application, coro: Coroutine[Any, Any, None]) -> None:
    """aiohttp has no ``BackgroundTasks``: a plain task, strongly referenced until it is done
    (the event loop keeps only a weak reference to a task)."""
    task = asyncio.create_task(coro)
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


# -- The lab's rules, around every route ----------------------------------------------------


# What a route's handler returns: the domain's ``Reply``, which :func:`lab_route` renders, or
# a stream whose head :func:`stream` has already sent.
Answer = Reply | web.StreamResponse
RouteHandler = Callable[[web.Request], Awaitable[Answer]]


def lab_route(handler: RouteHandler, *, streams: bool = False, sheds: bool = True) -> Handler:
    """Every error becomes a problem; a whole body is rendered, compressed and timed here
    (:func:`render`). A stream sends its head from inside the handler, so :func:`stream`
    compresses and times itself.

    A decorator each route is registered with, not an ``@web.middleware``: an app with any
    middleware runs two more coroutine layers on every request (the middleware, then aiohttp's
    own ``_fix_request_current_app``), measured at about a tenth of aiohttp's cost on
    ``/json`` (docs/performance.md). The router's 404 and 405 never reach a route's handler,
    so :func:`answer_unrouted` gives each its own route. Handlers return the domain's
    ``Reply`` rather than a ``web.Response``: the head is then built once, with every rule in
    it, instead of built by the handler and rewritten here.

    Costs kept off every request, each measured with ``lab instructions`` on ``/json``: only a
    route that ``streams`` records its start in the request (the first ``request[key]`` builds
    the request's state dict, about 3k instructions), and the settings are the process's
    cached ones, the object ``app[SETTINGS]`` holds (``request.app`` walks two properties,
    about 1k).

    With ``LAB_MAX_INFLIGHT`` set (SPEC §6), a route that ``sheds`` counts against the worker's
    in-flight gate, and past it answers the 503 ``overloaded`` problem without running."""
    settings = get_settings()
    gate = worker_gate(settings) if sheds else None

    @functools.wraps(handler)
    async def route(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if streams:
            request[STARTED] = started
        if gate is not None and not gate.admit():
            answer: Answer = problem_reply(overloaded(gate.limit))
        else:
            try:
                answer = await handler(request)
            except Problem as problem:
                answer = problem_reply(problem)
            except web.HTTPException as exc:  # raised by aiohttp itself: the body limit
                answer = problem_reply(http_problem(exc))
            except Exception:
                log.exception("unhandled error in %s %s", request.method, request.path)
                answer = problem_reply(internal())
            finally:
                if gate is not None:  # a whole body is written after this; a stream was
                    gate.release()
        response: web.StreamResponse
        if isinstance(answer, Reply):
            response = render(request, answer, started, settings)
        else:  # a stream, whose head (timing included) is out already
            response = answer
        if settings.access_log:  # LAB_ACCESS_LOG=on (SPEC §6); a whole body is written after this
            duration_ms = (time.perf_counter() - started) * 1000
            log_access(request.method, request.path, response.status, duration_ms)
        return response

    return route


def answer_unrouted(router: web.UrlDispatcher) -> None:
    """aiohttp's router answers an unknown path (404) or method (405) itself, in plain text.
    With no middleware to rewrite that, each resource gets a last ``*`` route that refuses the
    methods it lacks, and a catch-all resource, tried after every other, answers 404: both as
    problems, through :func:`lab_route`. A request that matches costs nothing more."""
    for resource in list(router.resources()):
        assert isinstance(resource, web.Resource)  # plain and dynamic paths only, no sub-apps
        allowed = sorted({r.method for r in resource})
        resource.add_route("*", lab_route(functools.partial(refuse_method, allowed)))
    router.add_route("*", "/{path:.*}", lab_route(unknown_path))


async def refuse_method(allowed: list[str], request: web.Request) -> Answer:
    raise method_not_allowed(allowed)


async def unknown_path(request: web.Request) -> Answer:
    raise not_found()


def http_problem(exc: web.HTTPException) -> Problem:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return payload_too_large()
    return Problem(exc.status, exc.reason)


def set_server_timing(request: web.Request, response: web.StreamResponse) -> None:
    """SPEC §2.2's span for a stream, from :func:`lab_route`'s entry to just before its head."""
    started = request.get(STARTED)
    if started is not None and request.app[SETTINGS].timing:
        response.headers[hdrs.SERVER_TIMING] = server_timing(started)


# -- Routes ---------------------------------------------------------------------------------

routes = web.RouteTableDef()
# aiohttp routes HEAD with every GET unless told not to. The contract names GET only, and the
# other frameworks answer HEAD with 405 and ``Allow: GET``; so does this one.
# Every route is registered through lab_route (errors, compression, timing).


def get(path: str, *, streams: bool = False) -> Callable[[RouteHandler], Handler]:
    sheds = path not in EXEMPT_PATHS  # LAB_MAX_INFLIGHT never sheds a health check
    return lambda handler: routes.get(path, allow_head=False)(
        lab_route(handler, streams=streams, sheds=sheds)
    )


def post(path: str) -> Callable[[RouteHandler], Handler]:
    return lambda handler: routes.post(path)(lab_route(handler))


@get("/plaintext")
async def plaintext(request: web.Request) -> Answer:
    return Reply(b"Hello, World!", "text/plain; charset=utf-8")


@get("/json")
async def json(request: web.Request) -> Answer:
    return replies.hello_json()


@get("/db")
async def db(request: web.Request) -> Answer:
    return await service.db(request.app[RESOURCES])


@get("/queries")
async def queries(request: web.Request) -> Answer:
    count = techempower.queries_param(request.query.get("queries"))
    return await service.queries(request.app[RESOURCES], count)


@get("/updates")
async def updates(request: web.Request) -> Answer:
    count = techempower.queries_param(request.query.get("queries"))
    return await service.updates(request.app[RESOURCES], count)


@get("/fortunes")
async def fortunes(request: web.Request) -> Answer:
    return await service.fortunes(request.app[RESOURCES])


# Before /items/{id}: aiohttp tries resources in the order they were added.
@get("/items/batch")
async def batch(request: web.Request) -> Answer:
    ids = parse_ids(request.query.get("ids"))
    return await service.batch_items(request.app[RESOURCES], ids)


@get("/items/{id}")
async def get_item(request: web.Request) -> Answer:
    item_id = path_id(request.match_info["id"])
    return await service.get_item(request.app[RESOURCES], item_id)


@get("/items")
async def list_items(request: web.Request) -> Answer:
    q = request.query
    limit = int_param(q, "limit", lo=1, hi=items.PAGE_LIMIT_MAX, default=items.PAGE_LIMIT_DEFAULT)
    after = int_param(q, "after", lo=0, hi=items.INT32_MAX, default=0)
    category = optional_category(q)
    return await service.list_items(request.app[RESOURCES], limit, after, category)


@post("/items")
async def create_item(request: web.Request) -> Answer:
    # 405 was the router's; read_body is 413; decode_body does 415 → 400 → 422.
    body = await read_body(request)
    item = decode_body(body, request.headers.get(hdrs.CONTENT_TYPE), items.ItemIn)
    key = request.headers.get("Idempotency-Key")
    return await service.create_item(request.app[RESOURCES], item, key)


@get("/cached/items/{id}")
async def cached_item(request: web.Request) -> Answer:
    item_id = path_id(request.match_info["id"])
    if_none_match = request.headers.get("If-None-Match")
    return await service.cached_item(request.app[RESOURCES], item_id, if_none_match)


@get("/limited")
async def limited(request: web.Request) -> Answer:
    res = request.app[RESOURCES]
    client = ratelimit.client_key(
        request.remote, request.headers.getall("X-Forwarded-For", []), res.settings.trusted_proxies
    )
    return await service.limited(res, client)


@get("/stream/items", streams=True)
async def stream_items(request: web.Request) -> Answer:
    count = int_param(
        request.query, "count", lo=1, hi=items.STREAM_COUNT_MAX, default=items.STREAM_COUNT_DEFAULT
    )
    reply = await service.stream_items(request.app[RESOURCES], count, request.headers.get("Accept"))
    if isinstance(reply, Reply):  # LAB_STREAMING=off: one whole body (SPEC §6)
        return reply
    return await stream(request, reply)


@get("/stream/events", streams=True)
async def stream_events(request: web.Request) -> Answer:
    q = request.query
    count = int_param(
        q, "count", lo=1, hi=items.EVENTS_COUNT_MAX, default=items.EVENTS_COUNT_DEFAULT
    )
    interval_ms = int_param(
        q, "interval_ms", lo=0, hi=items.EVENTS_INTERVAL_MAX, default=items.EVENTS_INTERVAL_DEFAULT
    )
    return await stream(request, service.stream_events(count, interval_ms))


@get("/report")
async def report(request: web.Request) -> Answer:
    rows = int_param(
        request.query, "rows", lo=1, hi=items.REPORT_ROWS_MAX, default=items.REPORT_ROWS_DEFAULT
    )
    return await service.report(request.app[RESOURCES], rows)


@get("/products")
async def products(request: web.Request) -> Answer:
    return await service.products(request.app[RESOURCES], request.headers.get("Accept"))


@get("/aggregate")
async def aggregate(request: web.Request) -> Answer:
    q = request.query
    n = int_param(q, "n", lo=1, hi=items.FANOUT_MAX, default=items.FANOUT_DEFAULT)
    delay_ms = int_param(q, "delay_ms", lo=0, hi=items.DELAY_MAX, default=items.DELAY_DEFAULT)
    return await service.aggregate(request.app[RESOURCES], n, delay_ms)


@get("/cpu")
async def cpu(request: web.Request) -> Answer:
    n = int_param(request.query, "n", lo=1, hi=items.CPU_MAX, default=items.CPU_DEFAULT)
    return await service.cpu(request.app[RESOURCES], n)


@post("/tasks")
async def create_task(request: web.Request) -> Answer:
    body = await read_body(request)
    spec = decode_body(body, request.headers.get(hdrs.CONTENT_TYPE), items.TaskIn, optional=True)
    res = request.app[RESOURCES]
    reply, task_id = await service.create_task(res, spec)
    run_in_background(request.app, service.run_task(res, task_id, spec))
    return reply


@get("/tasks/{task_id}")
async def get_task(request: web.Request) -> Answer:
    return await service.get_task(request.app[RESOURCES], request.match_info["task_id"])


@get("/health")
async def health(request: web.Request) -> Answer:
    return await service.health(request.app[RESOURCES])


# -- The application ----------------------------------------------------------------------------


def create_app() -> web.Application:
    # client_max_size: request.read() raises HTTPRequestEntityTooLarge past 64 KiB (SPEC §2.1).
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = check_framework(get_settings(), "aiohttp")  # SPEC §6
    app[TASKS] = set()
    app.cleanup_ctx.append(resources_ctx)
    app.cleanup_ctx.append(background_ctx)
    app.add_routes(routes)
    answer_unrouted(app.router)
    return app


# What gunicorn's aiohttp.GunicornUVLoopWebWorker and ``python -m impls.aiohttp`` serve.
app = create_app()

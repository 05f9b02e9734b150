"""Litestar adapter: routing, validation and lifecycle the Litestar way; behaviour from common/.

Read it beside ``impls/fastapi/app.py``. Query values are validated by Litestar's signature
model (``Annotated[int, Parameter(ge=..., le=...)]``) and JSON bodies are decoded straight into
the domain's msgspec Structs (``data: ItemIn``), Litestar's native path. Its errors
(``ValidationException``, routing errors, the body limit) are mapped onto the lab's RFC 9457
problems by plain synchronous exception handlers. Handlers return ``Response``/``Stream``
built from the domain's ``Reply``: the body is already JSON bytes, sent as they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeAlias

import msgspec
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.params import Parameter
from litestar.response import Stream

from common import items, ratelimit, replies, techempower
from common.aio import Resources, open_resources, service
from common.asgi import LabMiddleware
from common.problems import (
    MAX_BODY_BYTES,
    PROBLEM_MEDIA_TYPE,
    FieldError,
    Problem,
    bad_json,
    internal,
    payload_too_large,
    unsupported_media_type,
    validation,
)
from common.reply import Reply, StreamReply
from common.settings import check_framework, get_settings
from common.validation import check_json_text, is_json_media_type, parse_ids, path_id

log = logging.getLogger("lab")
AnyRequest: TypeAlias = Request[Any, Any, Any]

# -- Rendering ----------------------------------------------------------------------------


def render(reply: Reply | StreamReply, background: BackgroundTask | None = None) -> Response[Any]:
    # Litestar appends "; charset=utf-8" to every text/* type, even one that names its charset
    # already (common's HTML and CSV types do): give it the bare type and it writes the same.
    media_type = reply.media_type
    if media_type.startswith("text/"):
        media_type = media_type.partition(";")[0]
    headers = dict(reply.headers)
    if isinstance(reply, StreamReply):
        return Stream(
            reply.chunks, status_code=reply.status, headers=headers, media_type=media_type
        )
    return Response(
        reply.body,
        status_code=reply.status,
        headers=headers,
        media_type=media_type,
        background=background,
    )


def problem_response(problem: Problem) -> Response[bytes]:
    return Response(
        problem.body(),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


# -- Lifecycle and dependencies ------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    async with open_resources(get_settings()) as opened:
        app.state.resources = opened
        yield


def resources(state: State) -> Resources:
    """The worker's pools and clients, opened by the lifespan. A handler asks for ``state``
    (Litestar supplies it, as it does ``request`` and ``headers``) rather than for a
    ``Provide`` dependency: Litestar resolves a dependency on every request, and for a value
    that is the same for every request that was over a third of what ``/db`` counted above
    the hello world's (34k of 88k instructions on granian; ``lab instructions``,
    docs/performance.md). FastAPI's adapter reads ``app.state`` for the same reason."""
    res: Resources = state.resources
    return res


# -- Request bodies ------------------------------------------------------------------------


async def require_json(request: AnyRequest) -> None:
    """``before_request`` hook of the routes that take a body: 415 and the empty body, decided
    before anything parses it.

    Litestar decodes a ``data`` parameter as JSON whatever the ``Content-Type`` says, and
    treats an empty body as a missing parameter (a 422 for a required one). Reading the body
    here also applies ``request_max_body_size`` first (413 before 415, SPEC §2.1).
    """
    if not (await request.body()).strip():
        data = request.route_handler.parsed_data_field
        if data is not None and not data.is_optional:  # POST /items; POST /tasks may be empty
            raise bad_json("the body is empty")
        return
    content_type = request.headers.get("content-type")
    if not is_json_media_type(content_type):
        raise unsupported_media_type(content_type)
    # msgspec raises UnicodeDecodeError on bad UTF-8 and RecursionError on deep nesting (500s)
    check_json_text(await request.body())


_WHERE = re.compile(r"(.*?)(?: - at `\$\.?(.*)`)?", re.DOTALL)


async def strictly(request: AnyRequest, into: type[msgspec.Struct]) -> None:
    """Litestar converts parameters and bodies with msgspec's lax rules (its signature model
    fixes ``strict=False``), so ``"price": "12.5"`` would pass as a number and ``"n": 5.0`` as
    an integer. The contract wants JSON types as sent: convert the body once more, strictly.
    Cheap: ``request.json()`` returns the value Litestar has already decoded."""
    try:
        msgspec.convert(await request.json(), into, strict=True)
    except msgspec.ValidationError as exc:
        match = _WHERE.fullmatch(str(exc))
        assert match is not None
        error = {"key": match[2] or "data", "message": match[1], "source": "body"}
        raise ValidationException(extra=[error]) from None


# -- Routes ---------------------------------------------------------------------------------

Accept = Annotated[str | None, Parameter(header="accept")]


@get("/plaintext", media_type=MediaType.TEXT)
async def plaintext() -> bytes:
    return b"Hello, World!"


@get("/json")
async def json() -> Response[Any]:
    return render(replies.hello_json())


@get("/db")
async def db(state: State) -> Response[Any]:
    return render(await service.db(resources(state)))


@get("/queries")
async def queries(state: State, queries: str | None = None) -> Response[Any]:
    return render(await service.queries(resources(state), techempower.queries_param(queries)))


@get("/updates")
async def updates(state: State, queries: str | None = None) -> Response[Any]:
    return render(await service.updates(resources(state), techempower.queries_param(queries)))


@get("/fortunes")
async def fortunes(state: State) -> Response[Any]:
    return render(await service.fortunes(resources(state)))


@get("/items/batch")  # a static segment: Litestar's route trie tries it before /items/{id}
async def batch(state: State, ids: str | None = None) -> Response[Any]:
    return render(await service.batch_items(resources(state), parse_ids(ids)))


# The id arrives as text and common's path_id parses it: a Litestar ``{id:int}`` converter
# answers 404 for "abc" (the route does not match), where the contract wants 422 with loc
# ["path", "id"] for a non-integer, as for an id outside int32.
@get("/items/{id:str}")
async def get_item(state: State, id: str) -> Response[Any]:
    return render(await service.get_item(resources(state), path_id(id)))


@get("/items")
async def list_items(
    state: State,
    limit: Annotated[int, Parameter(ge=1, le=items.PAGE_LIMIT_MAX)] = items.PAGE_LIMIT_DEFAULT,
    after: Annotated[int, Parameter(ge=0, le=items.INT32_MAX)] = 0,
    category: items.Category | None = None,
) -> Response[Any]:
    return render(await service.list_items(resources(state), limit, after, category))


@post("/items", before_request=require_json)
async def create_item(
    request: AnyRequest,
    state: State,
    data: items.ItemIn,
    idempotency_key: Annotated[str | None, Parameter(header="idempotency-key")] = None,
) -> Response[Any]:
    await strictly(request, items.ItemIn)
    return render(await service.create_item(resources(state), data, idempotency_key))


@get("/cached/items/{id:str}")
async def cached_item(
    state: State,
    id: str,
    if_none_match: Annotated[str | None, Parameter(header="if-none-match")] = None,
) -> Response[Any]:
    return render(await service.cached_item(resources(state), path_id(id), if_none_match))


@get("/limited")
async def limited(request: AnyRequest, state: State) -> Response[Any]:
    res = resources(state)
    peer = request.client.host if request.client else None
    client = ratelimit.client_key(
        peer, request.headers.getall("x-forwarded-for", []), res.settings.trusted_proxies
    )
    return render(await service.limited(res, client))


@get("/stream/items")
async def stream_items(
    state: State,
    accept: Accept = None,
    count: Annotated[int, Parameter(ge=1, le=items.STREAM_COUNT_MAX)] = items.STREAM_COUNT_DEFAULT,
) -> Response[Any]:
    return render(await service.stream_items(resources(state), count, accept))


@get("/stream/events")
async def stream_events(
    count: Annotated[int, Parameter(ge=1, le=items.EVENTS_COUNT_MAX)] = items.EVENTS_COUNT_DEFAULT,
    interval_ms: Annotated[
        int, Parameter(ge=0, le=items.EVENTS_INTERVAL_MAX)
    ] = items.EVENTS_INTERVAL_DEFAULT,
) -> Response[Any]:
    return render(service.stream_events(count, interval_ms))


@get("/report")
async def report(
    state: State,
    rows: Annotated[int, Parameter(ge=1, le=items.REPORT_ROWS_MAX)] = items.REPORT_ROWS_DEFAULT,
) -> Response[Any]:
    return render(await service.report(resources(state), rows))


@get("/products")
async def products(state: State, accept: Accept = None) -> Response[Any]:
    return render(await service.products(resources(state), accept))


@get("/aggregate")
async def aggregate(
    state: State,
    n: Annotated[int, Parameter(ge=1, le=items.FANOUT_MAX)] = items.FANOUT_DEFAULT,
    delay_ms: Annotated[int, Parameter(ge=0, le=items.DELAY_MAX)] = items.DELAY_DEFAULT,
) -> Response[Any]:
    return render(await service.aggregate(resources(state), n, delay_ms))


@get("/cpu")
async def cpu(
    state: State, n: Annotated[int, Parameter(ge=1, le=items.CPU_MAX)] = items.CPU_DEFAULT
) -> Response[Any]:
    return render(await service.cpu(resources(state), n))


@post("/tasks", before_request=require_json)
async def create_task(
    request: AnyRequest, state: State, data: items.TaskIn | None = None
) -> Response[Any]:
    if data is None:  # no body (or JSON null): every field takes its default
        data = items.TaskIn()
    else:
        await strictly(request, items.TaskIn)
    res = resources(state)
    reply, task_id = await service.create_task(res, data)
    # A response's background task runs after its last byte has been sent.
    return render(reply, BackgroundTask(service.run_task, res, task_id, data))


@get("/tasks/{task_id:str}")
async def get_task(state: State, task_id: str) -> Response[Any]:
    return render(await service.get_task(resources(state), task_id))


@get("/health")
async def health(state: State) -> Response[Any]:
    return render(await service.health(resources(state)))


ROUTES = [
    plaintext, json, db, queries, updates, fortunes,
    batch, get_item, list_items, create_item, cached_item, limited, stream_items, stream_events,
    report, products, aggregate, cpu, create_task, get_task, health,
]  # fmt: skip


# -- Error mapping -------------------------------------------------------------------------
# Litestar calls an exception handler synchronously, (request, exc) -> Response, from the
# innermost layer that registers one for the exception's status code or class (MRO).


def on_problem(request: AnyRequest, exc: Problem) -> Response[bytes]:
    return problem_response(exc)


def on_validation(request: AnyRequest, exc: ValidationException) -> Response[bytes]:
    """Litestar's ValidationException is a 400 carrying ``extra=[{key, message, source}]``;
    the contract wants a 422 with ``errors=[{loc, msg}]``."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors = [_field_error(message) for message in extra if isinstance(message, dict)]
    return problem_response(validation(*errors or [FieldError(("query",), exc.detail)]))


def on_http(request: AnyRequest, exc: HTTPException) -> Response[bytes]:
    """Routing (404; 405 with its ``Allow``), the body limit (413), and a body that is not
    JSON, which Litestar reports as a plain 400 ``ClientException`` raised from a
    ``SerializationException``."""
    if isinstance(exc.__cause__, SerializationException):
        return problem_response(bad_json(str(exc.__cause__)))
    if isinstance(exc, RequestEntityTooLarge):  # the same body as common.asgi's early 413
        return problem_response(payload_too_large())
    return problem_response(Problem(exc.status_code, exc.detail, headers=dict(exc.headers or {})))


def on_error(request: AnyRequest, exc: Exception) -> Response[bytes]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(internal())


_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]*)`")


def _field_error(message: dict[str, Any]) -> FieldError:
    """One entry of Litestar's ``extra``. ``source`` is a ``ParamType`` ("query", "path",
    "header") or "body"; a body's ``key`` is the field's path, or ``data`` (the handler's
    parameter) when msgspec blames the object as a whole, as it does for a missing or an
    unknown field, whose name is then only in the message."""
    source = message.get("source", "query")
    where = str(getattr(source, "value", source))
    key, msg = message.get("key"), str(message.get("message", "invalid value"))
    if where != "body":
        return FieldError((where,) if key is None else (where, str(key)), msg)
    if key not in (None, "data"):
        return FieldError(("body", *str(key).split(".")), msg)
    named = _NAMED_FIELD.search(msg)
    return FieldError(("body", named[1]) if named else ("body",), msg)


# -- Application ---------------------------------------------------------------------------


def create_app() -> LabMiddleware:
    settings = check_framework(get_settings(), "litestar")  # refuse what it lacks (SPEC §6)
    app = Litestar(
        route_handlers=ROUTES,
        lifespan=[lifespan],
        exception_handlers={
            Problem: on_problem,
            ValidationException: on_validation,
            HTTPException: on_http,
            Exception: on_error,
        },
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=None,  # no schema or docs routes: we benchmark
        logging_config=None,  # leave logging to the server; on_error logs what it catches
        debug=False,
    )
    # Litestar runs ``middleware=[...]`` per route, after routing, so a 404 or a 405 would
    # never pass through it. The lab's middleware must see every response (Server-Timing,
    # Vary), so it wraps the whole application as plain ASGI instead. Litestar's router
    # normalises a path before matching it (trailing slashes stripped, repeated ones
    # collapsed; no setting turns that off), so ``/json/`` would answer as ``/json``: the
    # middleware's ``exact_paths`` keeps the contract's exact routing.
    return LabMiddleware(app, settings, limit_body=False, exact_paths=True)  # type: ignore[arg-type]


app = create_app()

"""FastAPI adapter: routing, validation and lifecycle the FastAPI way; behaviour from common/.

Validation is FastAPI's own (``Annotated[int, Query(ge=..., le=...)]`` and a pydantic model for
the body); its errors are mapped onto the lab's RFC 9457 problems in one handler. Handlers
return ``Response`` objects built from the domain's ``Reply``, which skips FastAPI's
``jsonable_encoder`` pass: the body is already JSON bytes from the domain's encoder.

``LAB_HANDLERS=sync`` (SPEC §6) registers ``def`` path operations for ``/db``,
``/items/{id}`` and ``/aggregate`` instead, which FastAPI runs in its threadpool, on the
synchronous twin (``common.sync``) whose resources the lifespan opens next to the async ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import BackgroundTasks, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Match

from common import items, ratelimit, replies, techempower
from common.aio import Resources, open_resources, service
from common.asgi import LabMiddleware
from common.items import INT32_MAX, INT32_MIN
from common.problems import (
    PROBLEM_MEDIA_TYPE,
    FieldError,
    Problem,
    bad_json,
    internal,
    method_not_allowed,
    unsupported_media_type,
)
from common.problems import validation as validation_problem
from common.reply import Reply, StreamReply
from common.settings import check_framework, get_settings
from common.sync import Resources as SyncResources
from common.sync import open_resources as open_sync_resources
from common.sync import service as sync_service
from common.validation import check_json_text, is_json_media_type, parse_ids

# -- Rendering ----------------------------------------------------------------------------


def render(reply: Reply | StreamReply) -> Response:
    if isinstance(reply, StreamReply):
        return StreamingResponse(reply.chunks, reply.status, dict(reply.headers), reply.media_type)
    return Response(reply.body, reply.status, dict(reply.headers), reply.media_type)


def problem_response(problem: Problem) -> Response:
    return Response(problem.body(), problem.status, problem.headers, PROBLEM_MEDIA_TYPE)


# -- Lifecycle and resources -----------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    async with open_resources(settings) as resources:
        app.state.resources = resources
        if settings.handlers == "async":
            yield
            return
        # LAB_HANDLERS=sync: a psycopg pool as large as the asyncpg one, for the def routes.
        with open_sync_resources(settings, threads=settings.db_pool_size) as sync_resources:
            app.state.sync_resources = sync_resources
            yield


def resources(request: Request) -> Resources:
    """The worker's pools and clients, opened by the lifespan. Read from app state rather than
    declared as ``Depends(...)``: FastAPI resolves a dependency on every request, and for a
    value that is the same for every request that cost about as many instructions as all the
    rest of ``/db``'s stack over the hello world (``lab instructions``, docs/performance.md).
    Parameters that vary per request (query, headers, body) still go through FastAPI's
    declarations."""
    res: Resources = request.app.state.resources
    return res


def sync_resources(request: Request) -> SyncResources:
    res: SyncResources = request.app.state.sync_resources
    return res


class JSONBodyRoute(APIRoute):
    """Read the body first, so the size limit (a 413 problem raised by LabMiddleware's
    receive) and the media type (415) are decided before FastAPI parses anything; FastAPI
    would turn the first into a 400 and the second into a 422. A custom route class is
    FastAPI's documented hook for this."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        body_required = self.body_field is not None and self.body_field.field_info.is_required()

        async def checked(request: Request) -> Response:
            body = (await request.body()).strip()  # 413 problem if over the limit
            if not body and not body_required:
                return await handler(request)
            content_type = request.headers.get("content-type")
            if not is_json_media_type(content_type):
                raise unsupported_media_type(content_type)
            if not body:
                raise bad_json("the body is empty")
            check_json_text(body)  # the stdlib json FastAPI uses accepts lone surrogates
            return await handler(request)

        return checked


# -- Request bodies (pydantic, FastAPI's native validation) -------------------------------


class ItemBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[
        str,
        Field(min_length=1, max_length=items.NAME_MAX, pattern=items.NAME_PATTERN, strict=True),
    ]
    category: Literal[items.CATEGORIES]  # type: ignore[valid-type]
    price: Annotated[float, Field(ge=0, le=items.PRICE_MAX, strict=True)]


class TaskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: Annotated[int, Field(ge=1, le=items.CPU_MAX, strict=True)] = items.TASK_N_DEFAULT
    delay_ms: Annotated[int, Field(ge=0, le=items.DELAY_MAX, strict=True)] = 0


ItemId = Annotated[int, Path(ge=INT32_MIN, le=INT32_MAX)]
FanOut = Annotated[int, Query(ge=1, le=items.FANOUT_MAX)]
Delay = Annotated[int, Query(ge=0, le=items.DELAY_MAX)]


def create_app() -> FastAPI:
    settings = check_framework(get_settings(), "fastapi")
    sync = settings.handlers == "sync"  # LAB_HANDLERS: def routes on the sync twin (SPEC §6)
    # Exact paths: `/json/` is a 404 like any unknown route, not a redirect (SPEC §2.1).
    app = FastAPI(
        lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )
    if settings.middleware == "basehttp":  # experiment switch (SPEC §6): the style's cost
        from common.basehttp import BaseHTTPLabMiddleware

        app.add_middleware(BaseHTTPLabMiddleware, settings=settings)
    else:
        app.add_middleware(LabMiddleware, settings=settings)
    add_error_handlers(app)

    @app.get("/plaintext")
    async def plaintext() -> Response:
        return PlainTextResponse(b"Hello, World!")

    @app.get("/json")
    async def json() -> Response:
        return render(replies.hello_json())

    if sync:

        @app.get("/db")
        def db_sync(request: Request) -> Response:
            return render(sync_service.db(sync_resources(request)))
    else:

        @app.get("/db")
        async def db(request: Request) -> Response:
            return render(await service.db(resources(request)))

    @app.get("/queries")
    async def queries(request: Request, queries: str | None = None) -> Response:
        return render(await service.queries(resources(request), techempower.queries_param(queries)))

    @app.get("/updates")
    async def updates(request: Request, queries: str | None = None) -> Response:
        return render(await service.updates(resources(request), techempower.queries_param(queries)))

    @app.get("/fortunes")
    async def fortunes(request: Request) -> Response:
        return render(await service.fortunes(resources(request)))

    @app.get("/items/batch")
    async def batch(request: Request, ids: str | None = None) -> Response:
        return render(await service.batch_items(resources(request), parse_ids(ids)))

    if sync:

        @app.get("/items/{id}")
        def get_item_sync(request: Request, id: ItemId) -> Response:
            return render(sync_service.get_item(sync_resources(request), id))
    else:

        @app.get("/items/{id}")
        async def get_item(request: Request, id: ItemId) -> Response:
            return render(await service.get_item(resources(request), id))

    @app.get("/items")
    async def list_items(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=items.PAGE_LIMIT_MAX)] = items.PAGE_LIMIT_DEFAULT,
        after: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
        category: Literal[items.CATEGORIES] | None = None,  # type: ignore[valid-type]
    ) -> Response:
        return render(await service.list_items(resources(request), limit, after, category))

    async def create_item(
        request: Request,
        item: ItemBody,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        spec = items.ItemIn(item.name, item.category, item.price)
        return render(await service.create_item(resources(request), spec, idempotency_key))

    @app.get("/cached/items/{id}")
    async def cached_item(
        request: Request, id: ItemId, if_none_match: Annotated[str | None, Header()] = None
    ) -> Response:
        return render(await service.cached_item(resources(request), id, if_none_match))

    @app.get("/limited")
    async def limited(request: Request) -> Response:
        peer = request.client.host if request.client else None
        client = ratelimit.client_key(
            peer, request.headers.getlist("x-forwarded-for"), settings.trusted_proxies
        )
        return render(await service.limited(resources(request), client))

    @app.get("/stream/items")
    async def stream_items(
        request: Request,
        count: Annotated[int, Query(ge=1, le=items.STREAM_COUNT_MAX)] = items.STREAM_COUNT_DEFAULT,
        accept: Annotated[str | None, Header()] = None,
    ) -> Response:
        return render(await service.stream_items(resources(request), count, accept))

    @app.get("/stream/events")
    async def stream_events(
        count: Annotated[int, Query(ge=1, le=items.EVENTS_COUNT_MAX)] = items.EVENTS_COUNT_DEFAULT,
        interval_ms: Annotated[
            int, Query(ge=0, le=items.EVENTS_INTERVAL_MAX)
        ] = items.EVENTS_INTERVAL_DEFAULT,
    ) -> Response:
        return render(service.stream_events(count, interval_ms))

    @app.get("/report")
    async def report(
        request: Request,
        rows: Annotated[int, Query(ge=1, le=items.REPORT_ROWS_MAX)] = items.REPORT_ROWS_DEFAULT,
    ) -> Response:
        return render(await service.report(resources(request), rows))

    @app.get("/products")
    async def products(
        request: Request, accept: Annotated[str | None, Header()] = None
    ) -> Response:
        return render(await service.products(resources(request), accept))

    if sync:

        @app.get("/aggregate")
        def aggregate_sync(
            request: Request,
            n: FanOut = items.FANOUT_DEFAULT,
            delay_ms: Delay = items.DELAY_DEFAULT,
        ) -> Response:
            return render(sync_service.aggregate(sync_resources(request), n, delay_ms))
    else:

        @app.get("/aggregate")
        async def aggregate(
            request: Request,
            n: FanOut = items.FANOUT_DEFAULT,
            delay_ms: Delay = items.DELAY_DEFAULT,
        ) -> Response:
            return render(await service.aggregate(resources(request), n, delay_ms))

    @app.get("/cpu")
    async def cpu(
        request: Request, n: Annotated[int, Query(ge=1, le=items.CPU_MAX)] = items.CPU_DEFAULT
    ) -> Response:
        return render(await service.cpu(resources(request), n))

    async def create_task(
        request: Request, background: BackgroundTasks, body: TaskBody | None = None
    ) -> Response:
        res = resources(request)
        spec = items.TaskIn(body.n, body.delay_ms) if body else items.TaskIn()
        reply, task_id = await service.create_task(res, spec)
        background.add_task(service.run_task, res, task_id, spec)
        return render(reply)

    @app.get("/tasks/{task_id}")
    async def get_task(request: Request, task_id: str) -> Response:
        return render(await service.get_task(resources(request), task_id))

    @app.get("/health")
    async def health(request: Request) -> Response:
        return render(await service.health(resources(request)))

    # Routes that take a JSON body read and check it first (JSONBodyRoute). Registered flat on
    # the app (not through an included router) so a 405 can see every route of a path.
    for path, endpoint in (("/items", create_item), ("/tasks", create_task)):
        app.router.add_api_route(
            path, endpoint, methods=["POST"], route_class_override=JSONBodyRoute
        )
    return app


# -- Error mapping -------------------------------------------------------------------------


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> Response:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):
            detail = errors[0].get("ctx", {}).get("error", "invalid JSON")
            return problem_response(Problem(400, f"The request body is not valid JSON: {detail}"))
        return problem_response(
            validation_problem(*(FieldError(_loc(e["loc"]), e["msg"]) for e in errors))
        )

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:
            # Starlette's Allow names only the first route matching the path; GET /items and
            # POST /items are two routes, so collect every partial match's methods.
            methods = [
                method
                for route in app.routes
                if isinstance(route, APIRoute) and route.matches(request.scope)[0] == Match.PARTIAL
                for method in route.methods
            ]
            return problem_response(method_not_allowed(methods))
        headers = dict(exc.headers or {})
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem_response(Problem(exc.status_code, detail, headers=headers))

    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> Response:
        return problem_response(internal())


def _loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """pydantic reports a missing JSON object as ``("body",)``, a union branch as an extra
    segment (``("body", "TaskBody", "n")``): keep where and which field."""
    return tuple(part for part in loc if part not in {"TaskBody", "ItemBody"})


app = create_app()

"""Flask adapter: routing, error mapping and lifecycle the Flask way; behaviour from common/.

Flask has no validation layer of its own, so query, path and body values go through
``common.validation`` (the same parser aiohttp uses); every error, Flask's own included, is
rendered as an RFC 9457 problem by three error handlers. Handlers return ``Response`` objects
built from the domain's ``Reply``: the body is already JSON bytes from orjson, so Flask's JSON
provider is never involved. I/O is the synchronous twin, ``common.sync`` (psycopg_pool,
redis-py, httpx), because a WSGI request runs on a thread of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing.util
import os
import threading
from collections.abc import Iterator

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from common import items, ratelimit, replies, techempower
from common.items import INT32_MAX, ItemIn, TaskIn
from common.problems import (
    PROBLEM_MEDIA_TYPE,
    Problem,
    internal,
    method_not_allowed,
    not_found,
    payload_too_large,
)
from common.reply import Reply, StreamReply
from common.settings import Settings, check_framework, get_settings
from common.sync import Resources, open_resources, service
from common.sync.resources import MAX_REQUEST_THREADS
from common.validation import decode_body, int_param, optional_category, parse_ids, path_id
from common.wsgi import LabWSGIMiddleware

log = logging.getLogger("lab")

# -- Rendering ----------------------------------------------------------------------------


def render(reply: Reply | StreamReply) -> Response:
    """A domain reply as a Flask response. ``content_type`` is passed as is (``mimetype``
    would append a charset werkzeug's way); a stream is a generator werkzeug iterates."""
    if isinstance(reply, StreamReply):
        chunks = reply.chunks
        assert isinstance(chunks, Iterator), "common.sync streams are synchronous"
        return Response(chunks, reply.status, dict(reply.headers), content_type=reply.media_type)
    return Response(reply.body, reply.status, dict(reply.headers), content_type=reply.media_type)


def problem_response(problem: Problem) -> Response:
    return Response(
        problem.body(), problem.status, problem.headers, content_type=PROBLEM_MEDIA_TYPE
    )


# -- Lifecycle: one set of resources per worker process -------------------------------------


class LabResources:
    """Flask has no lifespan hook, and servers fork workers after importing the app
    (gunicorn with ``--preload``) or import it in each worker (gunicorn without, granian).
    Pools, sockets and threads must not cross a fork, so resources are opened on first use
    in the process that serves, keyed by PID, and closed at that process's exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid = 0
        self._resources: Resources | None = None

    def init_app(self, app: Flask) -> None:
        app.extensions["lab"] = self

    def get(self) -> Resources:
        if self._pid != os.getpid() or self._resources is None:
            with self._lock:  # gthread / granian: the first requests arrive together
                if self._pid != os.getpid() or self._resources is None:
                    self._open(multithread=bool(request.environ.get("wsgi.multithread")))
        assert self._resources is not None
        return self._resources

    def _open(self, *, multithread: bool) -> None:
        # The server says whether requests share this process (gthread, granian) or come one
        # at a time (gunicorn's sync worker); the pool is sized for that.
        threads = MAX_REQUEST_THREADS if multithread else 1
        stack = contextlib.ExitStack()
        self._resources = stack.enter_context(open_resources(self.settings, threads=threads))
        self._pid = pid = os.getpid()

        def close() -> None:
            if os.getpid() == pid:  # never close a parent's pools from a forked child
                stack.close()  # idempotent: the second hook to run finds nothing left

        # gunicorn's workers leave through the interpreter's exit (atexit runs); granian's
        # are multiprocessing children that end in os._exit(), where only multiprocessing's
        # own finalizers run.
        atexit.register(close)
        multiprocessing.util.Finalize(self, close, exitpriority=10)


# -- The application -------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> Flask:
    settings = check_framework(settings or get_settings(), "flask")  # SPEC §6
    app = Flask(__name__)
    # OPTIONS is not part of the contract: 405 like any other method a route lacks.
    app.config.update(PROVIDE_AUTOMATIC_OPTIONS=False)
    app.url_map.merge_slashes = False  # "//json" is an unknown path (404), not a redirect
    lab = LabResources(settings)
    lab.init_app(app)
    res = lab.get
    add_error_handlers(app)

    @app.get("/plaintext")
    def plaintext() -> Response:
        return Response(b"Hello, World!", content_type="text/plain; charset=utf-8")

    @app.get("/json")
    def json() -> Response:
        return render(replies.hello_json())

    @app.get("/db")
    def db() -> Response:
        return render(service.db(res()))

    @app.get("/queries")
    def queries() -> Response:
        count = techempower.queries_param(request.args.get("queries"))
        return render(service.queries(res(), count))

    @app.get("/updates")
    def updates() -> Response:
        count = techempower.queries_param(request.args.get("queries"))
        return render(service.updates(res(), count))

    @app.get("/fortunes")
    def fortunes() -> Response:
        return render(service.fortunes(res()))

    # Before /items/<id>, so "batch" is never read as an id (werkzeug would rank the static
    # rule first anyway; the order states the intent).
    @app.get("/items/batch")
    def batch() -> Response:
        ids = parse_ids(request.args.get("ids"))
        return render(service.batch_items(res(), ids))

    # <id> is a plain string segment: path_id makes a non-integer or out-of-int32 id a 422
    # at ["path", "id"], where werkzeug's int converter would make it a 404.
    @app.get("/items/<id>")
    def get_item(id: str) -> Response:
        item_id = path_id(id)
        return render(service.get_item(res(), item_id))

    @app.get("/items")
    def list_items() -> Response:
        args = request.args
        limit = int_param(
            args, "limit", lo=1, hi=items.PAGE_LIMIT_MAX, default=items.PAGE_LIMIT_DEFAULT
        )
        after = int_param(args, "after", lo=0, hi=INT32_MAX, default=0)
        category = optional_category(args)
        return render(service.list_items(res(), limit, after, category))

    @app.post("/items")
    def create_item() -> Response:
        item = decode_body(request.get_data(), request.content_type, ItemIn)
        key = request.headers.get("Idempotency-Key")
        return render(service.create_item(res(), item, key))

    @app.get("/cached/items/<id>")
    def cached_item(id: str) -> Response:
        item_id = path_id(id)
        return render(service.cached_item(res(), item_id, request.headers.get("If-None-Match")))

    @app.get("/limited")
    def limited() -> Response:
        client = ratelimit.client_key(
            request.remote_addr,
            request.headers.getlist("X-Forwarded-For"),
            settings.trusted_proxies,
        )
        return render(service.limited(res(), client))

    @app.get("/stream/items")
    def stream_items() -> Response:
        count = int_param(
            request.args,
            "count",
            lo=1,
            hi=items.STREAM_COUNT_MAX,
            default=items.STREAM_COUNT_DEFAULT,
        )
        return render(service.stream_items(res(), count, request.headers.get("Accept")))

    @app.get("/stream/events")
    def stream_events() -> Response:
        args = request.args
        count = int_param(
            args, "count", lo=1, hi=items.EVENTS_COUNT_MAX, default=items.EVENTS_COUNT_DEFAULT
        )
        interval_ms = int_param(
            args,
            "interval_ms",
            lo=0,
            hi=items.EVENTS_INTERVAL_MAX,
            default=items.EVENTS_INTERVAL_DEFAULT,
        )
        return render(service.stream_events(count, interval_ms))

    @app.get("/report")
    def report() -> Response:
        rows = int_param(
            request.args, "rows", lo=1, hi=items.REPORT_ROWS_MAX, default=items.REPORT_ROWS_DEFAULT
        )
        return render(service.report(res(), rows))

    @app.get("/products")
    def products() -> Response:
        return render(service.products(res(), request.headers.get("Accept")))

    @app.get("/aggregate")
    def aggregate() -> Response:
        args = request.args
        n = int_param(args, "n", lo=1, hi=items.FANOUT_MAX, default=items.FANOUT_DEFAULT)
        delay_ms = int_param(
            args, "delay_ms", lo=0, hi=items.DELAY_MAX, default=items.DELAY_DEFAULT
        )
        return render(service.aggregate(res(), n, delay_ms))

    @app.get("/cpu")
    def cpu() -> Response:
        n = int_param(request.args, "n", lo=1, hi=items.CPU_MAX, default=items.CPU_DEFAULT)
        return render(service.cpu(res(), n))

    @app.post("/tasks")
    def create_task() -> Response:
        spec = decode_body(request.get_data(), request.content_type, TaskIn, optional=True)
        resources = res()
        reply, task_id = service.create_task(resources, spec)
        # WSGI has no "after the response" hook that outlives the request: the task goes to
        # the worker's background threads, its state already in Redis.
        resources.tasks.submit(service.run_task, resources, task_id, spec)
        return render(reply)

    @app.get("/tasks/<task_id>")
    def get_task(task_id: str) -> Response:
        return render(service.get_task(res(), task_id))

    @app.get("/health")
    def health() -> Response:
        return render(service.health(res()))

    # Outermost: Server-Timing covers Flask's own routing and error handling too.
    # The body limit is checked when a handler reads the body, so routing answers first
    # (405 → 413, SPEC §2.1); see LabWSGIMiddleware for why Flask's MAX_CONTENT_LENGTH is not used.
    app.wsgi_app = LabWSGIMiddleware(app.wsgi_app, settings)  # type: ignore[method-assign]
    return app


# -- Error mapping -------------------------------------------------------------------------


def add_error_handlers(app: Flask) -> None:
    @app.errorhandler(Problem)
    def on_problem(exc: Problem) -> Response:
        return problem_response(exc)

    @app.errorhandler(HTTPException)
    def on_http(exc: HTTPException) -> Response:
        """werkzeug's routing and body errors: 404, 405 (with Allow), 413, and the rest."""
        if exc.code == 404:
            return problem_response(not_found())
        if exc.code == 405:
            return problem_response(method_not_allowed(getattr(exc, "valid_methods", None) or []))
        if exc.code == 413:
            return problem_response(payload_too_large())
        return problem_response(Problem(exc.code or 500, exc.description or exc.name))

    @app.errorhandler(Exception)
    def on_error(exc: Exception) -> Response:
        log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
        return problem_response(internal())


app = create_app()

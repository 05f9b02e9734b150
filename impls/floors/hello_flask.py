"""Flask's hello world: a dict return (Flask's JSON provider), text/plain by hand, no debug.

``/db`` is the database path's floor: the pair's query on the pair's psycopg pool
(``common.sync.resources.open_pool``: size, timeouts, autocommit), opened by the first ``/db``
request of a worker (when ``wsgi.multithread`` says how many requests it serves at once, as
the pair does) and closed at the worker's exit, the row dumped with orjson."""

from __future__ import annotations

import atexit
import contextlib
import threading

import orjson
from flask import Flask, Response, request

from common import sql, techempower
from common.settings import get_settings
from common.sync.resources import MAX_REQUEST_THREADS, Pool, open_pool
from impls.floors import app_work

app = Flask(__name__)
WORLD_BY_ID = sql.psycopg_style(sql.WORLD_BY_ID)
_pool: Pool | None = None
_lock = threading.Lock()
_opened = contextlib.ExitStack()
atexit.register(_opened.close)


def pool() -> Pool:
    global _pool
    with _lock:
        if _pool is None:
            threads = MAX_REQUEST_THREADS if request.environ.get("wsgi.multithread") else 1
            _pool = _opened.enter_context(open_pool(get_settings(), threads))
        return _pool


@app.get("/json")
def json() -> dict[str, str]:
    return {"message": "Hello, World!"}


@app.get("/json-work")
def json_work() -> dict[str, str]:
    app_work()  # the control (impls/floors/__init__.py)
    return {"message": "Hello, World!"}


@app.get("/plaintext")
def plaintext() -> Response:
    return Response(b"Hello, World!", mimetype="text/plain")


@app.get("/db")
def db() -> Response:
    with pool().connection() as conn:
        row = conn.execute(WORLD_BY_ID, (techempower.random_number(),)).fetchone()
    assert row is not None
    body = orjson.dumps({"id": row[0], "randomNumber": row[1]})
    return Response(body, mimetype="application/json")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}

"""Flask's hello world: a dict return (Flask's JSON provider), text/plain by hand, no debug.

``/db`` is the database path's floor: the pair's query on a psycopg pool sized and set up as
the pair's (``common.sync.resources.pool_size``, autocommit), opened by the first ``/db``
request of a worker (when ``wsgi.multithread`` says how many requests it serves at once, as
the pair does), the row dumped with orjson."""

from __future__ import annotations

import threading

import orjson
from flask import Flask, Response, request
from psycopg_pool import ConnectionPool

from common import sql, techempower
from common.settings import get_settings
from common.sync.resources import MAX_REQUEST_THREADS, pool_size
from impls.floors import app_work

app = Flask(__name__)
WORLD_BY_ID = sql.psycopg_style(sql.WORLD_BY_ID)
_pool: ConnectionPool | None = None
_lock = threading.Lock()


def pool() -> ConnectionPool:
    global _pool
    with _lock:
        if _pool is None:
            settings = get_settings()
            threads = MAX_REQUEST_THREADS if request.environ.get("wsgi.multithread") else 1
            min_size, max_size = pool_size(settings, threads)
            _pool = ConnectionPool(
                settings.database_url,
                min_size=min_size,
                max_size=max_size,
                kwargs={"autocommit": True},
                open=True,
            )
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

"""A bare WSGI application (PEP 3333): the server's floor for WSGI servers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from impls.floors import app_work

StartResponse = Callable[..., Any]


def _route(media_type: str, body: bytes) -> tuple[list[tuple[str, str]], list[bytes]]:
    return [("Content-Type", media_type), ("Content-Length", str(len(body)))], [body]


ROUTES = {
    "/json": _route("application/json", b'{"message":"Hello, World!"}'),
    "/plaintext": _route("text/plain; charset=utf-8", b"Hello, World!"),
    "/health": _route("application/json", b'{"status":"ok"}'),
}
NOT_FOUND = _route("text/plain; charset=utf-8", b"Not Found")


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/json-work":  # the control: /json after a fixed amount of app work
        app_work()
        path = "/json"
    route = ROUTES.get(path)
    if route is None:
        start_response("404 Not Found", NOT_FOUND[0])
        return NOT_FOUND[1]
    start_response("200 OK", route[0])
    return route[1]

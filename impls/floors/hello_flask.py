"""Flask's hello world: a dict return (Flask's JSON provider), text/plain by hand, no debug."""

from __future__ import annotations

from flask import Flask, Response

app = Flask(__name__)


@app.get("/json")
def json() -> dict[str, str]:
    return {"message": "Hello, World!"}


@app.get("/plaintext")
def plaintext() -> Response:
    return Response(b"Hello, World!", mimetype="text/plain")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}

"""FastAPI's hello world, tuned as its docs advise: a return type so pydantic serialises the
body straight to JSON bytes (FastAPI deprecated ``ORJSONResponse`` for this), no OpenAPI or
docs routes."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel


class Message(BaseModel):
    message: str


class Health(BaseModel):
    status: str


app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/json")
async def json() -> Message:
    return Message(message="Hello, World!")


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext() -> str:
    return "Hello, World!"


@app.get("/health")
async def health() -> Health:
    return Health(status="ok")

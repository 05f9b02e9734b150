"""Litestar's hello world, tuned as its docs advise: async handlers (no thread hop), msgspec
serialisation (its default), OpenAPI off."""

from __future__ import annotations

from litestar import Litestar, MediaType, get


@get("/json")
async def json() -> dict[str, str]:
    return {"message": "Hello, World!"}


@get("/plaintext", media_type=MediaType.TEXT)
async def plaintext() -> str:
    return "Hello, World!"


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[json, plaintext, health], openapi_config=None)

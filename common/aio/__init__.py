"""The async edge of the domain: asyncpg, redis.asyncio and aiohttp's client.

Used by FastAPI, Litestar and aiohttp. Flask uses the synchronous twin in ``common.sync``.
"""

from .resources import Resources, open_resources

__all__ = ["Resources", "open_resources"]

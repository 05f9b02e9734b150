"""The synchronous edge of the domain: psycopg with psycopg_pool, redis-py and httpx.

Used by Flask (WSGI); the async frameworks use :mod:`common.aio`. Same SQL, keys, Lua script
and reply assembly, so the two cannot drift apart.
"""

from .resources import Resources, open_resources

__all__ = ["Resources", "open_resources"]

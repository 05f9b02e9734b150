"""Every Redis key the lab uses, in one place (SPEC §1)."""

from __future__ import annotations

import hashlib

PREFIX = "lab:"


def item_key(item_id: int) -> str:
    return f"{PREFIX}item:{item_id}"


def ratelimit_key(client: str) -> str:
    return f"{PREFIX}rl:{client}"


def task_key(task_id: str) -> str:
    return f"{PREFIX}task:{task_id}"


def idempotency_key(key: str) -> str:
    """A client's ``Idempotency-Key``, hashed: up to 255 characters of its choosing become a
    fixed-length key."""
    return f"{PREFIX}idem:{hashlib.sha256(key.encode()).hexdigest()}"

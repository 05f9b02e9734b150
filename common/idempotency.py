"""``Idempotency-Key`` on ``POST /items`` (SPEC §3.13): the pure rules; the twins' services
do the I/O.

A client that sends a POST and gets no answer, or a 503, cannot know whether the row was
stored; the header lets it send the same request again without risk of a second row
(draft-ietf-httpapi-idempotency-key-header). The lab keeps, in Redis under the key (hashed,
``common.keys.idempotency_key``), a record of the request: a fingerprint of the item and
the row id reserved for it from the items sequence before anything is inserted. The insert
then names that id and does nothing on a conflict, so PostgreSQL's primary key is what makes
it happen once: a retry of a request whose insert was stored finds the row and answers with
it, one whose insert was not stored inserts it now, and two at once insert it once between
them. No "in progress" state is needed, and nothing depends on the 503's cause.

A record lives ``LAB_IDEMPOTENCY_TTL`` seconds (a day by default); after that, the key is new.
"""

from __future__ import annotations

import hashlib

import orjson

from .items import ItemIn
from .problems import FieldError, Problem, validation

__all__ = [
    "KEY_MAX",
    "REPLAYED_HEADER",
    "check_key",
    "fingerprint",
    "item_id_for",
    "record",
    "reused",
]

KEY_MAX = 255
REPLAYED_HEADER = "Idempotent-Replayed"


def check_key(raw: str) -> str:
    """The header's value if it is one (1..255 visible ASCII characters), else the 422."""
    if not 0 < len(raw) <= KEY_MAX or not all(" " < ch <= "~" for ch in raw):
        raise validation(
            FieldError(
                ("header", "idempotency-key"),
                f"must be 1..{KEY_MAX} visible ASCII characters",
            )
        )
    return raw


def fingerprint(item: ItemIn) -> str:
    """The request as the lab reads it: two bodies that validate to the same item (spacing,
    member order, ``10`` or ``10.0``) are the same request."""
    canonical = orjson.dumps([item.name, item.category, round(item.price, 2)])
    return hashlib.sha256(canonical).hexdigest()


def record(fingerprint: str, item_id: int) -> bytes:
    return orjson.dumps({"fingerprint": fingerprint, "id": item_id})


def item_id_for(existing: object, fingerprint: str, reserved: int) -> int:
    """The row this request inserts, or finds inserted: the id it reserved when its record
    was stored (``SET NX GET`` gave no earlier record), else the earlier record's id, as long
    as the item is the same (else the 422)."""
    if not isinstance(existing, bytes):
        return reserved
    data = orjson.loads(existing)
    if data["fingerprint"] != fingerprint:
        raise reused()
    return int(data["id"])


def reused() -> Problem:
    """The same key sent with a different item: the draft's 422, with a slug of its own."""
    return Problem(
        422,
        "This Idempotency-Key was already used with a different request body.",
        slug="idempotency-key-reused",
    )

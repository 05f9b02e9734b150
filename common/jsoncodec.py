"""The two JSON encoders of the ``LAB_JSON_CODEC`` experiment (SPEC §6).

``orjson`` is the lab's encoder. ``stdlib`` is what an app without it writes: the standard
library's ``json`` (its C accelerator), compact and UTF-8, with a ``default`` hook for the one
type the domain hands it that ``json`` does not know, ``datetime``. On every lab payload the
two produce the same bytes (tests/unit/test_jsoncodec.py checks every seed row), so an
experiment measures the encoder and nothing else. Where they would differ, and why no lab
payload reaches it:

- floats below 1e-4 in magnitude: ``json`` writes ``1e-05``, orjson ``0.00001``; the lab's
  floats are prices with 2 decimals and ``elapsed_ms`` rounded to 3 (0 or at least 0.001);
- NaN and infinities: ``json`` writes ``NaN``, orjson ``null``; none are produced;
- ``Decimal``, non-string keys, integers beyond 64 bits: orjson refuses them (TypeError),
  as this ``default`` does for ``Decimal``; the SQL casts prices to ``float8`` for this reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

__all__ = ["ENCODERS", "orjson_dumps", "stdlib_dumps"]

_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def orjson_dumps(value: Any) -> bytes:
    """JSON as the lab serves it: orjson, datetimes in UTC ending in ``Z``."""
    return orjson.dumps(value, option=_ORJSON_OPTIONS)


def _default(value: Any) -> str:
    """orjson's datetime text with ``OPT_UTC_Z | OPT_NAIVE_UTC``: ISO 8601, microseconds only
    when not zero (as ``isoformat``), a zero offset or a naive value written ``Z``. Called
    once per timestamp, so the common case (UTC) is one ``isoformat`` and a slice."""
    if isinstance(value, datetime):
        text = value.isoformat()
        if text.endswith("+00:00"):
            return text[:-6] + "Z"
        return text + "Z" if value.utcoffset() is None else text
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


_stdlib = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=True, default=_default
).encode


def stdlib_dumps(value: Any) -> bytes:
    """The standard library's ``json`` (C accelerated): compact, UTF-8, same bytes as
    :func:`orjson_dumps` on the lab's payloads."""
    return _stdlib(value).encode()


ENCODERS: dict[str, Callable[[Any], bytes]] = {"orjson": orjson_dumps, "stdlib": stdlib_dumps}

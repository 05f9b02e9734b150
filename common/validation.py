"""Request parsing for frameworks without a validation layer of their own (aiohttp, Flask),
and the JSON body rules every framework shares (SPEC §2.1: 413 → 415 → 400 → 422).

FastAPI and Litestar validate query and path values with their own machinery; their
adapters map those errors onto the same :class:`~common.problems.Problem` shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

import msgspec
import orjson

from . import items
from .problems import (
    MAX_BODY_BYTES,
    FieldError,
    bad_json,
    payload_too_large,
    unsupported_media_type,
    validation,
)

T = TypeVar("T")

__all__ = [
    "decode_body",
    "int_param",
    "is_json_media_type",
    "optional_category",
    "parse_ids",
]


def int_param(
    params: Mapping[str, str],
    name: str,
    *,
    lo: int,
    hi: int,
    default: int | None = None,
    where: str = "query",
) -> int:
    """An integer parameter within ``lo..hi``; missing → ``default`` (or 422 if none)."""
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise validation(FieldError((where, name), "field required"))
        return default
    try:
        value = int(raw.strip()) if re.fullmatch(r"\s*[+-]?[0-9]+\s*", raw) else None
    except ValueError:
        value = None
    if value is None:
        raise validation(FieldError((where, name), "value is not a valid integer"))
    if not lo <= value <= hi:
        raise validation(FieldError((where, name), f"value must be between {lo} and {hi}"))
    return value


def path_id(raw: str) -> int:
    """An item id from the path: any int32 (SPEC §3.3); the lookup decides 404."""
    return int_param({"id": raw}, "id", lo=items.INT32_MIN, hi=items.INT32_MAX, where="path")


def optional_category(params: Mapping[str, str]) -> str | None:
    raw = params.get("category")
    if raw is None:
        return None
    if raw not in items.CATEGORIES:
        raise validation(
            FieldError(("query", "category"), "value must be one of " + ", ".join(items.CATEGORIES))
        )
    return raw


def parse_ids(raw: str | None) -> list[int]:
    """``ids=1,5,9``: 1..100 int32 values, duplicates dropped, order kept (SPEC §3.5)."""
    loc = ("query", "ids")
    if raw is None or not raw.strip():
        raise validation(FieldError(loc, "at least one id is required"))
    parts = raw.split(",")
    if len(parts) > items.BATCH_MAX:
        raise validation(FieldError(loc, f"at most {items.BATCH_MAX} ids are allowed"))
    ids: dict[int, None] = {}
    for part in parts:
        if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", part):
            raise validation(FieldError(loc, f"{part!r} is not a valid integer"))
        value = int(part)
        if not items.INT32_MIN <= value <= items.INT32_MAX:
            raise validation(FieldError(loc, f"{value} is out of the int32 range"))
        ids[value] = None
    return list(ids)


def is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


_PATH = re.compile(r"at `\$(.*)`$")


def _loc_of(message: str) -> tuple[str | int, ...]:
    """msgspec says ``... - at `$.price``` or ``at `$[0]```; turn that into a ``loc``."""
    named = re.search(r"(?:unknown|missing required) field `([^`]*)`", message)
    loc: list[str | int] = ["body"]
    match = _PATH.search(message)
    if match:
        for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", match[1]):
            loc.append(key if key else int(index))
    if named:
        loc.append(named[1])
    return tuple(loc)


def check_json_text(body: bytes) -> None:
    """JSON text must be UTF-8 without lone surrogate escapes (RFC 8259 §8.1, §8.2); anything
    else is malformed (400). For frameworks whose parser is laxer (the stdlib ``json`` under
    FastAPI accepts ``"\\ud800"``) or fails with a non-JSON error (``UnicodeDecodeError``)."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_json(str(exc)) from None


def decode_body(
    body: bytes,
    content_type: str | None,
    into: type[T],
    *,
    optional: bool = False,
) -> T:
    """Decode a JSON request body into a msgspec type, raising the right problem.

    ``optional`` bodies may be empty (then ``into()`` is returned, all defaults).
    """
    if len(body) > MAX_BODY_BYTES:
        raise payload_too_large()
    if optional and not body.strip():
        return into()
    if not is_json_media_type(content_type):
        raise unsupported_media_type(content_type)
    try:
        raw = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise bad_json(str(exc)) from None
    if not isinstance(raw, dict):
        raise validation(FieldError(("body",), "expected a JSON object"))
    try:
        return msgspec.convert(raw, into, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise validation(FieldError(_loc_of(message), message.split(" - at ")[0])) from None

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
    "check_events_duration",
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
    value = _integer(raw)
    if value is None:
        raise validation(FieldError((where, name), "value is not a valid integer"))
    if not lo <= value <= hi:
        raise validation(FieldError((where, name), f"value must be between {lo} and {hi}"))
    return value


_INTEGER = re.compile(r"\s*([+-]?)0*([0-9]+)\s*")
# No integer the contract accepts has more digits. Python's int() refuses strings of more
# than 4,300 digits with a ValueError (CVE-2020-10735), and converting thousands of digits
# is quadratic work an attacker chooses: anything longer is out of range, unconverted.
_MAX_DIGITS = 19
_OUT_OF_RANGE: int = 10**_MAX_DIGITS


def _integer(raw: str) -> int | None:
    """``raw`` as an integer (ASCII digits, an optional sign, spaces around); None when it
    is not one. A value of more than ``_MAX_DIGITS`` digits comes back as +-10**19, out of
    every range the contract checks, without converting it."""
    match = _INTEGER.fullmatch(raw)
    if match is None:
        return None
    sign, digits = str(match[1]), str(match[2])
    if len(digits) > _MAX_DIGITS:
        return -_OUT_OF_RANGE if sign == "-" else _OUT_OF_RANGE
    return int(sign + digits)


def _shown(text: str, limit: int = 24) -> str:
    """A value quoted in a problem's detail, cut short: the detail echoes the input."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_events_duration(count: int, interval_ms: int) -> None:
    """SPEC §3.9: an event stream lasts at most a minute, whatever its two parameters allow
    each on its own (1000 events 10 s apart would hold a connection, and a WSGI thread, for
    nearly three hours). Checked by the service, after each framework has checked the two."""
    if (count - 1) * interval_ms > items.EVENTS_DURATION_MAX_MS:
        limit = items.EVENTS_DURATION_MAX_MS
        raise validation(
            FieldError(
                ("query", "interval_ms"),
                f"(count - 1) x interval_ms must be at most {limit} ms (one minute)",
            )
        )


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
        value = _integer(part)
        if value is None:
            raise validation(FieldError(loc, f"{_shown(part)} is not a valid integer"))
        if not items.INT32_MIN <= value <= items.INT32_MAX:
            raise validation(FieldError(loc, f"{_shown(part.strip())} is out of the int32 range"))
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
    """JSON text must be UTF-8 without lone surrogate escapes (RFC 8259 §8.1, §8.2), nested at
    most ``MAX_JSON_DEPTH`` deep; anything else is malformed (400). For frameworks whose
    parser is laxer (the stdlib ``json`` under FastAPI accepts ``"\\ud800"``) or fails with
    a non-JSON error (``UnicodeDecodeError``, ``RecursionError``)."""
    try:
        value = orjson.loads(body)  # orjson itself stops at 1,024 levels
    except orjson.JSONDecodeError as exc:
        raise bad_json(str(exc)) from None
    _check_depth(body, value)


# The contract's bodies nest two levels. msgspec and the stdlib json recurse once a level
# and raise RecursionError near Python's limit (about 1,000 frames, less the caller's).
MAX_JSON_DEPTH = 32


def _check_depth(body: bytes, value: object) -> None:
    """``malformed-json`` when ``value`` (``body`` decoded) nests deeper than allowed; the
    walk runs only when the body has that many brackets at all (two byte counts in C)."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):  # the (depth + 1)-th array or object
            if depth >= MAX_JSON_DEPTH:
                raise bad_json(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


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
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH:
        check_json_text(body)  # may nest too deep for msgspec's recursion
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

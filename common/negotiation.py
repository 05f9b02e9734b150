"""Proactive content negotiation (RFC 9110 §12.5): pure functions over header strings.

Why not a library: ``werkzeug.datastructures.MIMEAccept.best_match`` breaks a q tie in
favour of the offer matched by the *more specific* range (``*/*, application/xml`` picks
XML, SPEC §3.11 wants the server's order, so JSON), and it never matches
``application/json;charset=utf-8`` to ``application/json``. ``python-mimeparse`` breaks
ties towards the *last* offer, compares types case-sensitively, turns an invalid q into
1 and raises on a malformed range. Each fails a rule of SPEC §2.3/§3.11, so this module
holds a small parser instead.

Headers repeat across requests, so answers are cached (``header_cache``) on the raw header
text and the offers; the parsing below runs once per distinct header (of sane length).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .headercache import header_cache

__all__ = ["best_encoding", "best_media_type"]

_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# One list element / one parameter, honouring quoted strings (a "," or ";" inside quotes
# does not split). An unterminated quote runs to the end and the element is then dropped.
_ELEMENTS = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*"?)+')
_PARAMS = re.compile(r'(?:[^;"]|"(?:[^"\\]|\\.)*"?)+')
_RANGE = re.compile(rf"({_TCHARS})/({_TCHARS})")
_CODING = re.compile(_TCHARS)
_PARAM = re.compile(rf'({_TCHARS})[ \t]*=[ \t]*({_TCHARS}|"(?:[^"\\]|\\.)*")')
# RFC 9110 allows at most three decimals; real clients send ".2" (Java) or "0.8000", so
# any plain decimal is read and the 0..1 range is what is enforced.
_QVALUE = re.compile(r"[0-9]*\.?[0-9]+|[0-9]+\.")

# (type, subtype, specificity, q); specificity orders */* < type/* < type/sub < type/sub;p.
_Range = tuple[str, str, tuple[int, int, int], float]


def _qvalue(text: str) -> float | None:
    """The weight, or None when it is not a number in 0..1 (the element is then dropped)."""
    if _QVALUE.fullmatch(text) is None:
        return None
    q = float(text)
    return q if q <= 1.0 else None


def _split_params(element: str) -> tuple[str, list[str]] | None:
    parts = [p.strip(" \t") for p in _PARAMS.findall(element)]
    if not parts or not parts[0]:
        return None
    return parts[0], [p for p in parts[1:] if p]


def _weight(params: list[str]) -> tuple[float, bool] | None:
    """(q, has media-type parameters), or None for a malformed element.

    Parameters before ``q`` belong to the media type (they make a range more specific);
    those after it are accept-extensions and are ignored (RFC 9110 §12.5.1).
    """
    q = 1.0
    has_params = False
    for param in params:
        m = _PARAM.fullmatch(param)
        if m is None:
            return None
        if m[1].lower() == "q":
            value = _qvalue(m[2])
            if value is None:
                return None
            q = value
            break
        has_params = True
    return q, has_params


@header_cache(maxsize=512)
def _parse_accept(header: str) -> tuple[_Range, ...]:
    ranges: list[_Range] = []
    for element in _ELEMENTS.findall(header):
        split = _split_params(element)
        if split is None:
            continue
        media, params = split
        if media == "*":  # Java's URLConnection sends a bare "*"
            media = "*/*"
        m = _RANGE.fullmatch(media)
        weight = _weight(params)
        if m is None or weight is None:
            continue
        type_, subtype = m[1].lower(), m[2].lower()
        if type_ == "*" and subtype != "*":  # "*/json" is not a media range
            continue
        q, has_params = weight
        ranges.append((type_, subtype, (type_ != "*", subtype != "*", has_params), q))
    return tuple(ranges)


def _media_quality(ranges: tuple[_Range, ...], type_: str, subtype: str) -> float:
    """The q of the most specific range matching ``type_/subtype`` (0.0 when none does).

    Equally specific duplicates (``a/b;q=0.2, a/b;q=0.9``) take the highest q.
    """
    best_spec: tuple[int, int, int] = (-1, -1, -1)
    best_q = 0.0
    for r_type, r_sub, spec, q in ranges:
        if (r_type == "*" or r_type == type_) and (r_sub == "*" or r_sub == subtype):
            if spec > best_spec:
                best_spec, best_q = spec, q
            elif spec == best_spec and q > best_q:
                best_q = q
    return best_q


@header_cache(maxsize=512)
def _best_media_type(accept: str, offers: tuple[str, ...]) -> str | None:
    ranges = _parse_accept(accept)
    best: str | None = None
    best_q = 0.0
    for offer in offers:
        type_, _, subtype = offer.partition(";")[0].strip().lower().partition("/")
        q = _media_quality(ranges, type_, subtype)
        if q > best_q:  # strict: a tie keeps the earlier offer, and q=0 never wins
            best, best_q = offer, q
    return best


def best_media_type(accept: str | None, offers: Sequence[str]) -> str | None:
    """The offer the client prefers (RFC 9110 §12.5.1), or None: nothing acceptable (406).

    An absent or blank header accepts anything, so the first offer wins. A header whose
    every element is malformed accepts nothing.
    """
    if accept is None or not accept.strip(" \t"):
        return offers[0] if offers else None
    return _best_media_type(accept, tuple(offers))


@header_cache(maxsize=512)
def _parse_accept_encoding(header: str) -> dict[str, float]:
    """coding → q, with ``x-gzip`` folded into ``gzip``; a repeated coding keeps its best q."""
    codings: dict[str, float] = {}
    for element in _ELEMENTS.findall(header):
        split = _split_params(element)
        if split is None or _CODING.fullmatch(split[0]) is None:
            continue
        weight = _weight(split[1])
        if weight is None:
            continue
        coding = split[0].lower()
        if coding == "x-gzip":
            coding = "gzip"
        codings[coding] = max(weight[0], codings.get(coding, 0.0))
    return codings


@header_cache(maxsize=512)
def _best_encoding(header: str, offers: tuple[str, ...]) -> str | None:
    codings = _parse_accept_encoding(header)
    star = codings.get("*", 0.0)
    best: str | None = None
    best_q = 0.0
    for offer in offers:
        q = codings.get(offer, star)
        if q > best_q:
            best, best_q = offer, q
    # An explicitly preferred identity ("identity;q=1, gzip;q=0.5") means "do not compress";
    # an equal q does not, since compressing is then at least as welcome.
    if best is not None and codings.get("identity", 0.0) > best_q:
        return None
    return best


def best_encoding(
    accept_encoding: str | None, offers: Sequence[str] = ("zstd", "br", "gzip")
) -> str | None:
    """The content coding to use (SPEC §2.3), or None for identity (uncompressed).

    ``*`` lends its q to every offer the header does not name; ``q=0`` forbids; ties go
    to the order of ``offers``. No header means identity, as does an empty one.
    """
    if not accept_encoding:
        return None
    return _best_encoding(accept_encoding, tuple(offers))

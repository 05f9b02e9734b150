"""ETags and If-None-Match (SPEC §3.6, RFC 9110 §13.1.2)."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.httpcache import cache_headers, etag_for, if_none_match

BODY = b'{"id":1,"name":"widget"}'
TAG = etag_for(BODY)
OPAQUE = TAG[1:-1]


def test_etag_is_strong_blake2b_128() -> None:
    assert re.fullmatch(r'"[0-9a-f]{32}"', TAG)
    assert hashlib.blake2b(BODY, digest_size=16).hexdigest() == OPAQUE
    assert etag_for(BODY) == TAG
    assert etag_for(BODY + b" ") != TAG
    assert etag_for(b"") == '"' + hashlib.blake2b(b"", digest_size=16).hexdigest() + '"'


@given(st.binary(), st.binary())
def test_etag_distinguishes_bodies(a: bytes, b: bytes) -> None:
    assert (etag_for(a) == etag_for(b)) == (a == b)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        (TAG, True),
        (f"W/{TAG}", True),  # weak comparison
        ("*", True),
        (" * ", True),
        (f'"other", {TAG}', True),
        (f'"a", W/"b",{TAG} ,"c"', True),
        (f'"x,y", {TAG}', True),  # a comma inside a tag does not split it
        ('"other"', False),
        ('W/"other", "another"', False),
        (OPAQUE, False),  # unquoted: not an entity tag
        (f'"{OPAQUE.upper()}"', False),  # opaque tags compare exactly
        (f'"{OPAQUE}x"', False),
        ('""', False),
        ("garbage", False),
        ("**", False),
    ],
)
def test_if_none_match(header: str | None, expected: bool) -> None:
    assert if_none_match(header, TAG) is expected


def test_if_none_match_weak_server_tag() -> None:
    assert if_none_match('"abc"', 'W/"abc"')
    assert if_none_match('W/"abc"', 'W/"abc"')
    assert not if_none_match('"abd"', 'W/"abc"')


@given(st.text(max_size=100))
def test_if_none_match_never_raises(header: str) -> None:
    assert if_none_match(header, TAG) in (True, False)


def test_cache_headers() -> None:
    assert cache_headers(TAG, 60, "HIT") == {
        "ETag": TAG,
        "Cache-Control": "public, max-age=60",
        "X-Cache": "HIT",
    }
    assert cache_headers(TAG, 5, "BYPASS")["Cache-Control"] == "public, max-age=5"

"""Accept / Accept-Encoding negotiation (SPEC §2.3, §3.8, §3.11; RFC 9110 §12.5)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.formats import PRODUCT_TYPES, STREAM_TYPES
from common.negotiation import best_encoding, best_media_type

JSON, XML, YAML, CSV, MSGPACK = PRODUCT_TYPES


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        # absent / blank → first offer
        (None, JSON),
        ("", JSON),
        ("  ", JSON),
        # exact and ordering by q
        ("application/xml", XML),
        ("application/yaml;q=0.5, text/csv;q=0.6", CSV),
        ("application/json;q=0.5, application/xml;q=0.9", XML),
        ("application/msgpack", MSGPACK),
        # SPEC §3.11's own examples: the most specific range decides a type's q
        ("*/*;q=0.1, application/xml", XML),
        ("application/*;q=0, application/json", JSON),
        # ... in the other direction: a specific q=0 beats a permissive wildcard
        ("application/json;q=0, */*", XML),
        ("application/*;q=0.2, */*;q=0.9", CSV),
        ("text/*;q=0.1, application/*;q=0.5", JSON),
        ("text/csv;q=0.9, text/*;q=0.1, */*;q=0.5", CSV),
        ("application/xml;q=0, application/*;q=0.1, */*;q=1", CSV),
        # ties go to the server's order, whatever the client's order or specificity
        ("*/*", JSON),
        ("*/*, application/xml", JSON),
        ("application/xml, application/json", JSON),
        ("application/xml;q=0.5, */*;q=0.5", JSON),
        ("text/csv, application/yaml", YAML),
        ("application/*", JSON),
        # nothing acceptable
        ("text/html", None),
        ("application/json;q=0", None),
        ("*/*;q=0", None),
        ("application/*;q=0, text/*;q=0", None),
        ("image/png, text/html;q=0.9", None),
        # malformed elements are skipped, the rest still count
        ("nonsense, text/csv", CSV),
        ("application/xml;q=abc, text/csv", CSV),
        ("application/xml;q=2, text/csv;q=0.1", CSV),
        ("application/xml;q=-1, text/csv;q=0.1", CSV),
        ("application/xml;q=, text/csv;q=0.1", CSV),
        ("*/xml, text/csv;q=0.1", CSV),
        ("application/xml;level, text/csv;q=0.1", CSV),
        ("application/xml;=1, text/csv;q=0.1", CSV),
        ('application/xml;foo="unterminated, text/csv', None),
        ("/, a/, /b, ,,;,", None),
        ("garbage", None),
        # case-insensitive types, subtypes and the q name
        ("APPLICATION/XML", XML),
        ("Application/*;Q=0, TEXT/CSV;q=0.3", CSV),
        # media-type parameters: ignored for matching, but more specific than none
        ("application/json;charset=utf-8", JSON),
        ("application/xml;q=0.3, application/xml;charset=utf-8;q=0.9, application/json;q=0.5", XML),
        ("application/xml;charset=utf-8;q=0, application/xml", None),
        ("*/*;q=0.5, */*;foo=bar;q=0.1, application/*;q=0.9", JSON),
        # accept-extensions after q do not make a range more specific
        ("application/xml;q=0.9;ext=1, application/xml;charset=utf-8;q=0.2", XML),
        # quoted strings may hold "," and ";"
        ('application/xml;foo="a,b;c";q=0.9, application/json;q=0.1', XML),
        # whitespace and empty list elements
        (" , application/xml ;  q=0.8 ,, ", XML),
        ("application/xml\t;\tq=0.8", XML),
        # Java's URLConnection default: a bare "*" and q without a leading 0
        ("text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2", JSON),
        # equally specific duplicates take the higher q
        ("application/xml;q=0.2, application/xml;q=0.9, application/json;q=0.5", XML),
        ("q=1", None),
    ],
)
def test_products(accept: str | None, expected: str | None) -> None:
    assert best_media_type(accept, PRODUCT_TYPES) == expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/x-ndjson"),
        ("*/*", "application/x-ndjson"),
        ("application/*", "application/x-ndjson"),
        ("application/json", "application/json"),
        ("text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("application/x-ndjson;q=0.5, application/json", "application/json"),
        ("text/event-stream", None),
    ],
)
def test_stream_types(accept: str | None, expected: str | None) -> None:
    assert best_media_type(accept, STREAM_TYPES) == expected


def test_offers_may_be_a_list_and_keep_their_spelling() -> None:
    assert best_media_type("text/csv", ["application/json", "text/csv"]) == "text/csv"
    assert best_media_type("text/csv", ["Text/CSV"]) == "Text/CSV"


def test_no_offers() -> None:
    assert best_media_type(None, ()) is None
    assert best_media_type("*/*", ()) is None


_OTHER_TYPES = ["*/*", "application/*", "text/*", XML, YAML, CSV, MSGPACK, "text/html", "x/y"]
_TYPES = st.sampled_from([*_OTHER_TYPES, JSON])
_Q = st.sampled_from(["", ";q=0", ";q=0.1", ";q=0.5", ";q=0.50", ";q=1", ";q=.3", ";q=1.0"])
_PARAM = st.sampled_from(["", ";charset=utf-8", ';v="1"'])
_RANGES = st.lists(st.tuples(_TYPES, _PARAM, _Q).map("".join), min_size=1, max_size=8)
_NON_JSON_RANGES = st.lists(
    st.tuples(st.sampled_from(_OTHER_TYPES), _PARAM, _Q).map("".join), min_size=1, max_size=8
)


@given(_RANGES, st.randoms(use_true_random=False))
def test_client_order_of_ranges_does_not_matter(ranges: list[str], rnd: random.Random) -> None:
    shuffled = list(ranges)
    rnd.shuffle(shuffled)
    first = best_media_type(", ".join(ranges), PRODUCT_TYPES)
    assert first == best_media_type(", ".join(shuffled), PRODUCT_TYPES)
    assert first is None or first in PRODUCT_TYPES


@given(_NON_JSON_RANGES)
def test_wildcards_never_beat_a_specific_refusal(ranges: list[str]) -> None:
    header = ", ".join([*ranges, "application/json;q=0", "*/*"])
    assert best_media_type(header, PRODUCT_TYPES) != JSON


@given(st.text(max_size=200))
def test_arbitrary_accept_never_raises(header: str) -> None:
    result = best_media_type(header, PRODUCT_TYPES)
    assert result is None or result in PRODUCT_TYPES


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        # ties: zstd > br > gzip, whatever the client's order
        ("gzip, br", "br"),
        ("gzip, br, zstd", "zstd"),
        ("gzip, deflate, br", "br"),
        # q decides first
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("zstd;q=0.1, gzip;q=0.2", "gzip"),
        # "*" lends its q only to codings the header does not name
        ("*", "zstd"),
        ("*;q=0.5, gzip", "gzip"),
        ("*, zstd;q=0", "br"),
        ("*, zstd;q=0, br;q=0", "gzip"),
        ("gzip;q=0.3, *;q=0.2", "gzip"),
        ("gzip;q=0.1, *;q=0.2", "zstd"),
        # q=0 forbids
        ("gzip;q=0", None),
        ("*;q=0", None),
        ("gzip;q=0, *", "zstd"),
        ("gzip;q=0.000", None),
        # x-gzip is gzip
        ("x-gzip", "gzip"),
        ("X-GZIP;q=0.5, deflate", "gzip"),
        ("x-gzip;q=0, gzip;q=0", None),
        # case-insensitive
        ("GZip, BR", "br"),
        ("ZSTD;Q=0.9", "zstd"),
        # not offered
        ("deflate", None),
        ("compress, deflate;q=0.5", None),
        # an explicitly preferred identity means uncompressed; a tie does not
        ("identity;q=1, gzip;q=0.5", None),
        ("identity, gzip", "gzip"),
        ("identity;q=0.5, br", "br"),
        # malformed elements skipped
        ("br;q=abc, gzip", "gzip"),
        ("br;q=5, gzip", "gzip"),
        ("g zip, gzip;q=0.4", "gzip"),
        (",,, ,", None),
        ("gzip;q=0.2, gzip;q=0.8, br;q=0.5", "gzip"),
        ("gzip ; q=0.5 , br ; q=0.4", "gzip"),
    ],
)
def test_best_encoding(header: str | None, expected: str | None) -> None:
    assert best_encoding(header) == expected


def test_best_encoding_custom_offers() -> None:
    assert best_encoding("br, gzip", ("gzip",)) == "gzip"
    assert best_encoding("br", ["gzip"]) is None
    assert best_encoding("x-gzip", ["gzip", "br"]) == "gzip"
    assert best_encoding("*", ("gzip", "br")) == "gzip"


@given(st.text(max_size=200))
def test_arbitrary_accept_encoding_never_raises(header: str) -> None:
    assert best_encoding(header) in (None, "zstd", "br", "gzip")

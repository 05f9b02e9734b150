"""common.validation: the parsing rules aiohttp and Flask rely on (SPEC §2.1, §3)."""

from __future__ import annotations

import pytest

from common.items import INT32_MAX, INT32_MIN, ItemIn, TaskIn
from common.problems import MAX_BODY_BYTES, Problem
from common.validation import (
    check_json_text,
    decode_body,
    int_param,
    optional_category,
    parse_ids,
    path_id,
)


def problem_of(fn, *args, **kwargs) -> Problem:
    with pytest.raises(Problem) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("100", 100), (" 7 ", 7), ("+3", 3)])
def test_int_param_accepts_integers_in_range(raw: str, expected: int) -> None:
    assert int_param({"limit": raw}, "limit", lo=1, hi=100) == expected


@pytest.mark.parametrize("raw", ["0", "101", "-1", "1.5", "abc", "", "1e3", "0x10", "١"])
def test_int_param_rejects_with_location(raw: str) -> None:
    problem = problem_of(int_param, {"limit": raw}, "limit", lo=1, hi=100)
    assert problem.status == 422
    assert problem.as_dict()["errors"][0]["loc"] == ["query", "limit"]


def test_int_param_default_and_required() -> None:
    assert int_param({}, "limit", lo=1, hi=100, default=20) == 20
    assert problem_of(int_param, {}, "n", lo=1, hi=2).errors[0].msg == "field required"


def test_path_id_covers_int32_only() -> None:
    assert path_id(str(INT32_MAX)) == INT32_MAX
    assert path_id(str(INT32_MIN)) == INT32_MIN
    for raw in (str(INT32_MAX + 1), str(INT32_MIN - 1), "1;DROP TABLE items", "%00"):
        assert problem_of(path_id, raw).errors[0].loc == ("path", "id")


def test_category() -> None:
    assert optional_category({}) is None
    assert optional_category({"category": "books"}) == "books"
    assert problem_of(optional_category, {"category": "Books"}).status == 422


def test_parse_ids_keeps_order_and_drops_repeats() -> None:
    assert parse_ids("9,1,5,1") == [9, 1, 5]


@pytest.mark.parametrize(
    "raw", [None, "", " ", "1,,2", "1,a", ",".join(["1"] * 101), "99999999999"]
)
def test_parse_ids_rejects(raw: str | None) -> None:
    problem = problem_of(parse_ids, raw)
    assert problem.status == 422
    assert problem.errors[0].loc == ("query", "ids")


@pytest.mark.parametrize("digits", [4_301, 50_000])
def test_integers_past_pythons_digit_limit_are_out_of_range(digits: int) -> None:
    # int() of more than 4,300 digits raises ValueError: it must never reach a handler
    for raw in ("9" * digits, "-" + "9" * digits):
        assert problem_of(parse_ids, f"1,{raw}").errors[0].loc == ("query", "ids")
        assert problem_of(path_id, raw).status == 422
        assert problem_of(int_param, {"limit": raw}, "limit", lo=1, hi=100).status == 422
    assert parse_ids("0" * digits + "7") == [7]  # leading zeros are still the number
    detail = problem_of(parse_ids, "9" * digits).errors[0].msg
    assert len(detail) < 80  # the problem quotes the value cut short


GOOD = b'{"name": "lamp", "category": "books", "price": 12.5}'


@pytest.mark.parametrize("depth", [33, 900, 1_000, 5_000])
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_json_nested_deeper_than_the_contract_is_malformed(depth: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    body = opener * depth + (b"1" if opener != b"[" else b"") + closer * depth
    malformed = "urn:lab:problem:malformed-json"
    assert problem_of(decode_body, body, "application/json", ItemIn).type == malformed
    assert problem_of(check_json_text, body).type == malformed


def test_json_nested_to_the_limit_is_decoded() -> None:
    body = b'{"name": "lamp", "category": "books", "price": 1, "x": ' + b"[" * 31 + b"]" * 31
    check_json_text(body + b"}")  # 32 levels with the object: allowed


def test_decode_body_accepts_json_with_params() -> None:
    item = decode_body(GOOD, "application/json; charset=utf-8", ItemIn)
    assert (item.name, item.category, item.price) == ("lamp", "books", 12.5)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"x" * (MAX_BODY_BYTES + 1), "text/plain", 413),  # size before media type
        (GOOD, "text/plain", 415),
        (GOOD, None, 415),
        (b'{"name": ', "application/json", 400),  # syntax before validation
        (b"[1, 2]", "application/json", 422),
        (b'{"name": "a", "category": "books", "price": true}', "application/json", 422),
        (b'{"name": "", "category": "books", "price": 1}', "application/json", 422),
        (b'{"name": "a", "category": "cars", "price": 1}', "application/json", 422),
        (b'{"name": "a", "category": "books", "price": -1}', "application/json", 422),
        (b'{"name": "a", "category": "books", "price": 1000001}', "application/json", 422),
        (b'{"name": "a", "category": "books"}', "application/json", 422),
    ],
)
def test_decode_body_problem_order(body: bytes, content_type: str | None, status: int) -> None:
    assert problem_of(decode_body, body, content_type, ItemIn).status == status


def test_unknown_field_is_located() -> None:
    body = b'{"name": "a", "category": "books", "price": 1, "admin": true}'
    problem = problem_of(decode_body, body, "application/json", ItemIn)
    assert problem.errors[0].loc == ("body", "admin")


def test_wrong_type_is_located() -> None:
    body = b'{"name": 5, "category": "books", "price": 1}'
    assert problem_of(decode_body, body, "application/json", ItemIn).errors[0].loc == (
        "body",
        "name",
    )


def test_optional_body() -> None:
    assert decode_body(b"", None, TaskIn, optional=True) == TaskIn()
    assert decode_body(b"{}", "application/json", TaskIn, optional=True) == TaskIn()
    assert decode_body(b'{"n": 5}', "application/json", TaskIn, optional=True).n == 5
    assert (
        problem_of(decode_body, b'{"n": 0}', "application/json", TaskIn, optional=True).status
        == 422
    )


def test_nul_in_name_is_a_validation_error() -> None:
    """PostgreSQL text cannot store U+0000: a 422 at the edge, not a failed INSERT (500)."""
    body = b'{"name": "a\\u0000b", "category": "books", "price": 1}'
    problem = problem_of(decode_body, body, "application/json", ItemIn)
    assert (problem.status, problem.errors[0].loc) == (422, ("body", "name"))


@pytest.mark.parametrize(
    "body", [b'{"name": "\xff"}', b'{"name": "\\ud800"}', b'{"name": "\\udc00x"}']
)
def test_non_utf8_and_lone_surrogates_are_malformed(body: bytes) -> None:
    assert problem_of(decode_body, body, "application/json", ItemIn).status == 400
    assert problem_of(check_json_text, body).status == 400


def test_check_json_text_accepts_pairs_and_plain_text() -> None:
    check_json_text(b'{"name": "\\ud83d\\ude00 ok"}')
    check_json_text('{"name": "été"}'.encode())

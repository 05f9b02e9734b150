"""Property-based requests against the query, path and body parsers (SPEC §2.1): whatever
the shape of a request, the answer is a success or a 4xx problem, never a 5xx.

Schemathesis (tests/fuzz) generates from the OpenAPI document, so it sends what the
document can describe. These strategies send what it cannot: numbers of any length, in any
spelling; repeated parameters; bytes that are not UTF-8, percent-encoded in the path and the
query, and raw in the body; JSON nested and widened past anything the contract uses.
Hypothesis runs derandomized (the same examples on every run, so a failure reproduces) and
each example is one real request to the pair; the checking client fails any 5xx, any 4xx
that is not an RFC 9457 problem, and any stack trace.
"""

from __future__ import annotations

import json
from urllib.parse import quote, quote_from_bytes, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.client import LabClient

pytestmark = pytest.mark.conformance

EXAMPLES = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
# Below every server's request-line limit (SPEC.md D2): what is judged is the app's parsing.
MAX_TARGET = 3500

# The routes that parse query values, and the names they read.
QUERY_ROUTES: dict[str, tuple[str, ...]] = {
    "/queries": ("queries",),
    "/updates": ("queries",),
    "/items": ("limit", "after", "category"),
    "/items/batch": ("ids",),
    "/stream/items": ("count",),
    "/stream/events": ("count", "interval_ms"),
    "/report": ("rows",),
    "/aggregate": ("n", "delay_ms"),
    "/cpu": ("n",),
}

digits = st.text(alphabet="0123456789", min_size=1, max_size=60)
numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.builds(lambda sign, d: sign + d, st.sampled_from(["", "-", "+", " ", "0x", "1e"]), digits),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "0", "00001", "1_000", "٣", "１", "1,2", "true", "null"]),
)
# Any bytes, percent-encoded: much of it is not UTF-8.
raw_bytes = st.binary(max_size=24).map(lambda b: quote_from_bytes(b, safe=""))
text_values = st.text(max_size=24).map(lambda t: quote(t, safe=""))
values = st.one_of(numbers.map(lambda v: quote(v, safe="")), raw_bytes, text_values)


# Values a route accepts but that cost seconds (10^7 iterations of /cpu, a 10 s upstream
# delay, a minute of events): a number any parser could read above its cap is sent as the
# cap, so every request stays quick and still valid where it was.
CAPS = {
    ("/cpu", "n"): 100_000,
    ("/aggregate", "delay_ms"): 50,
    ("/stream/events", "count"): 20,
    ("/stream/events", "interval_ms"): 20,
    ("/stream/items", "count"): 2000,
}


def _capped(path: str, name: str, value: str) -> str:
    cap = CAPS.get((path, name))
    if cap is None:
        return value
    text = unquote(value, errors="replace").strip().replace("_", "")
    try:
        number = float(int(text)) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        return value
    return str(cap) if abs(number) > cap else value


@st.composite
def query_requests(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(sorted(QUERY_ROUTES)))
    names = QUERY_ROUTES[path]
    pairs = draw(
        st.lists(
            st.tuples(st.one_of(st.sampled_from(names), raw_bytes), values),
            min_size=1,
            max_size=4,  # a name may repeat: ?n=1&n=2
        )
    )
    if path == "/stream/events" and not any(n == "interval_ms" for n, _ in pairs):
        pairs.append(("interval_ms", "0"))  # not the default 100 ms between events
    return f"{path}?" + "&".join(f"{n}={_capped(path, n, v)}" for n, v in pairs)


@given(target=query_requests())
@EXAMPLES
def test_any_query_gets_an_answer_or_a_problem(client: LabClient, target: str) -> None:
    if len(target) > MAX_TARGET:
        return
    resp = client.get(target, headers={"Accept-Encoding": "identity"})
    assert resp.status_code in {200, 400, 404, 422}, (target, resp.status_code)


@given(segment=st.one_of(numbers.map(lambda v: quote(v, safe="")), raw_bytes))
@EXAMPLES
def test_any_item_id_gets_an_answer_or_a_problem(client: LabClient, segment: str) -> None:
    for prefix in ("/items/", "/cached/items/"):
        resp = client.get(prefix + segment)
        assert resp.status_code in {200, 404, 422}, (prefix + segment, resp.status_code)


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=40,
)
item_like = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values,
        "category": st.one_of(st.sampled_from(["toys", "books", "Toys", ""]), json_values),
        "price": json_values,
        "extra": json_values,
    },
)


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    item_like.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),  # not UTF-8, not JSON
    st.integers(min_value=1, max_value=5000).map(_deep),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" + b"0," * n + b"0]"),
    st.builds(lambda d: b'{"name": "x", "category": "toys", "price": ' + d.encode() + b"}", digits),
)


@given(body=bodies)
@EXAMPLES
def test_any_item_body_gets_an_answer_or_a_problem(client: LabClient, body: bytes) -> None:
    resp = client.post("/items", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code in {201, 400, 422}, (body[:200], resp.status_code)

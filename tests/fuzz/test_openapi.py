"""The OpenAPI document (``openapi.yaml``) is valid, names exactly SPEC §3's routes, carries
the bounds of ``common/items.py``, and every operation it declares is served by every pair."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema_rs
import pytest
import schemathesis

from common import idempotency, items, techempower
from common.problems import MAX_BODY_BYTES
from lab.matrix import REPO_ROOT
from tests.fuzz import OPENAPI_PATH, FuzzServer, load_document, operations, resolve
from tests.support.client import TLS

SPEC_PATH = REPO_ROOT / "SPEC.md"
ROUTE = re.compile(r"`(GET|HEAD|POST|PUT|PATCH|DELETE) (/[^`\s?]*)")
CPU_MODULUS = 1_000_000_007  # common/cpu.py: x = (x * 31 + i) % 1000000007
NUMERIC_10_2_MAX = 99_999_999.99  # items.price numeric(10,2), SPEC §1

# --- helpers -------------------------------------------------------------------------------------


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            label = value["name"] if isinstance(value, dict) and "in" in value else str(index)
            yield from _walk(value, (*path, f"[{label}]"))


def schema_objects(document: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every JSON Schema the document holds at the top of a schema position."""
    for name, schema in document["components"]["schemas"].items():
        yield f"components.schemas.{name}", schema
    for path, node in _walk(document):
        if path[:2] == ("components", "schemas") or not path or path[-1] != "schema":
            continue
        yield ".".join(path), node


BOUND_KEYWORDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "default",
)


def bounds(document: dict[str, Any]) -> dict[str, Any]:
    """Every numeric bound and default in the document, by a readable path."""
    found = {}
    for path, node in _walk(document):
        if path and path[-1] in BOUND_KEYWORDS and not isinstance(node, (dict, list)):
            key = ".".join(path).replace(".[", "[")
            found[_short(key)] = node
    return found


def _short(key: str) -> str:
    """``paths./items.get.parameters[limit].schema.maximum`` → ``/items.get[limit].maximum``,
    ``components.schemas.Item.properties.id.maximum`` → ``Item.id.maximum``."""
    key = key.removeprefix("paths.").replace("components.schemas.", "")
    key = key.replace("components.", "")
    return key.replace(".properties.", ".").replace(".parameters[", "[").replace(".schema.", ".")


def spec_routes() -> dict[tuple[str, str], set[str]]:
    """(METHOD, path) → the SPEC §3 subsections that name it, read from SPEC.md: the routes in
    the ``### 3.x`` headings and in the bullet lists under them (§3.1 lists its group there).
    Routes only mentioned in running text (the upstream's ``GET /work``) are not the API's."""
    text = SPEC_PATH.read_text(encoding="utf-8")
    start, end = text.index("\n## 3."), text.index("\n## 4.")
    found: dict[tuple[str, str], set[str]] = {}
    section = None
    for line in text[start:end].splitlines():
        heading = re.match(r"### (3\.\d+)\b", line)
        if heading:
            section = "§" + heading[1]
        if section is None or not (heading or line.startswith("- ")):
            continue
        for method, path in ROUTE.findall(line):
            found.setdefault((method, path), set()).add(section)
    return found


# --- the document itself -------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    """schemathesis's own loader, against the OpenAPI 3.1 meta-schema it ships."""
    schema = schemathesis.openapi.from_path(OPENAPI_PATH)
    schema.validate()
    assert load_document()["openapi"].startswith("3.1.")


def test_invalid_document_is_rejected() -> None:
    """The validation above is not a no-op: a misplaced member fails it."""
    broken = copy.deepcopy(load_document())
    broken["paths"]["/json"]["get"]["responses"]["200"]["bogus"] = True
    with pytest.raises(jsonschema_rs.ValidationError, match="bogus"):
        schemathesis.openapi.from_dict(broken).validate()


def test_schemas_are_valid_json_schema() -> None:
    """The OpenAPI meta-schema does not look inside Schema Objects: check each one against
    JSON Schema 2020-12 (OpenAPI 3.1's dialect)."""
    document = load_document()
    errors = []
    for where, schema in schema_objects(document):
        try:
            jsonschema_rs.meta.validate(
                {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
            )
        except jsonschema_rs.ValidationError as exc:
            errors.append(f"{where}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_references_resolve() -> None:
    document = load_document()
    refs = {n["$ref"] for _, n in _walk(document) if isinstance(n, dict) and "$ref" in n}
    assert refs
    for ref in sorted(refs):
        assert resolve(document, {"$ref": ref}) is not None, ref


def test_examples_match_their_schemas() -> None:
    """Every example (used by the served-routes check below) is valid for its schema."""
    document = load_document()
    components = {"components": document["components"]}
    checked = 0
    for method, path, op in operations(document):
        for param in op.get("parameters", []):
            param = resolve(document, param)
            if "example" in param:
                validator = jsonschema_rs.Draft202012Validator({**param["schema"], **components})
                assert validator.is_valid(param["example"]), (method, path, param["name"])
                checked += 1
        for media, media_object in op.get("requestBody", {}).get("content", {}).items():
            if "example" in media_object:
                validator = jsonschema_rs.Draft202012Validator(
                    {**media_object["schema"], **components}
                )
                assert validator.is_valid(media_object["example"]), (method, path, media)
                checked += 1
    assert checked


def test_operations_are_named_and_cited() -> None:
    ids = [op.get("operationId") for _, _, op in operations()]
    assert all(ids), "every operation has an operationId"
    assert len(ids) == len(set(ids)), "operationIds are unique"
    for method, path, op in operations():
        assert re.fullmatch(r"§3\.\d+", op.get("x-spec-section", "")), (method, path)


def test_routes_are_exactly_spec_section_3() -> None:
    """The document's operations are SPEC §3's routes, no more and no fewer, each citing a
    subsection that names it."""
    spec = spec_routes()
    documented = {(method, path): op["x-spec-section"] for method, path, op in operations()}
    assert len(spec) >= 16, f"SPEC.md parsing found too few routes: {sorted(spec)}"
    assert set(documented) - set(spec) == set(), "documented but not in SPEC §3"
    assert set(spec) - set(documented) == set(), "in SPEC §3 but not documented"
    for route, section in documented.items():
        assert section in spec[route], f"{route} cites {section}; SPEC names it in {spec[route]}"


# The document's bounds, each from its source of truth. A bound added to the document without
# a line here fails the test, so the table cannot silently fall behind.
EXPECTED_BOUNDS: dict[str, Any] = {
    # SPEC §3.4
    "/items.get[limit].minimum": 1,
    "/items.get[limit].maximum": items.PAGE_LIMIT_MAX,
    "/items.get[limit].default": items.PAGE_LIMIT_DEFAULT,
    "/items.get[after].minimum": 0,
    "/items.get[after].maximum": items.INT32_MAX,
    "/items.get[after].default": 0,
    "Page.items.maxItems": items.PAGE_LIMIT_MAX,
    # SPEC §3.5
    "/items/batch.get[ids].minItems": 1,
    "/items/batch.get[ids].maxItems": items.BATCH_MAX,
    "/items/batch.get[ids].items.minimum": items.INT32_MIN,
    "/items/batch.get[ids].items.maximum": items.INT32_MAX,
    "Batch.items.maxItems": items.BATCH_MAX,
    # SPEC §3.3, §3.6
    "parameters.ItemId.minimum": items.INT32_MIN,
    "parameters.ItemId.maximum": items.INT32_MAX,
    "Item.id.minimum": 1,
    "Item.id.maximum": items.INT32_MAX,
    "Item.price.minimum": 0,
    "Item.price.maximum": NUMERIC_10_2_MAX,
    # SPEC §3.13
    "/items.post[Idempotency-Key].minLength": 1,
    "/items.post[Idempotency-Key].maxLength": idempotency.KEY_MAX,
    # SPEC §3.8
    "/stream/items.get[count].minimum": 1,
    "/stream/items.get[count].maximum": items.STREAM_COUNT_MAX,
    "/stream/items.get[count].default": items.STREAM_COUNT_DEFAULT,
    "/stream/items.get.responses.200.content.application/x-ndjson.maxItems": items.STREAM_COUNT_MAX,
    "/stream/items.get.responses.200.content.application/json.maxItems": items.STREAM_COUNT_MAX,
    # SPEC §3.9
    "/stream/events.get[count].minimum": 1,
    "/stream/events.get[count].maximum": items.EVENTS_COUNT_MAX,
    "/stream/events.get[count].default": items.EVENTS_COUNT_DEFAULT,
    "/stream/events.get[interval_ms].minimum": 0,
    "/stream/events.get[interval_ms].maximum": items.EVENTS_INTERVAL_MAX,
    "/stream/events.get[interval_ms].default": items.EVENTS_INTERVAL_DEFAULT,
    "SequenceEvent.data.contentSchema.seq.minimum": 1,
    "SequenceEvent.data.contentSchema.seq.maximum": items.EVENTS_COUNT_MAX,
    "SequenceEvent.data.contentSchema.count.minimum": 1,
    "SequenceEvent.data.contentSchema.count.maximum": items.EVENTS_COUNT_MAX,
    # SPEC §3.10
    "/report.get[rows].minimum": 1,
    "/report.get[rows].maximum": items.REPORT_ROWS_MAX,
    "/report.get[rows].default": items.REPORT_ROWS_DEFAULT,
    "Report.rows.minimum": 1,
    "Report.rows.maximum": items.REPORT_ROWS_MAX,
    "Report.items.minItems": 1,
    "Report.items.maxItems": items.REPORT_ROWS_MAX,
    # SPEC §3.11
    "Products.minItems": items.PRODUCTS_COUNT,
    "Products.maxItems": items.PRODUCTS_COUNT,
    # SPEC §3.12
    "/aggregate.get[n].minimum": 1,
    "/aggregate.get[n].maximum": items.FANOUT_MAX,
    "/aggregate.get[n].default": items.FANOUT_DEFAULT,
    "/aggregate.get[delay_ms].minimum": 0,
    "/aggregate.get[delay_ms].maximum": items.DELAY_MAX,
    "/aggregate.get[delay_ms].default": items.DELAY_DEFAULT,
    "UpstreamBody.i.minimum": 0,
    "UpstreamBody.i.maximum": items.FANOUT_MAX - 1,
    "UpstreamBody.delay_ms.minimum": 0,
    "UpstreamBody.delay_ms.maximum": items.DELAY_MAX,
    "UpstreamBody.value.minimum": 0,
    "UpstreamFailure.i.minimum": 0,
    "UpstreamFailure.i.maximum": items.FANOUT_MAX - 1,
    "Aggregate.results.minItems": 1,
    "Aggregate.results.maxItems": items.FANOUT_MAX,
    "Aggregate.errors.maxItems": items.FANOUT_MAX - 1,
    "Aggregate.elapsed_ms.minimum": 0,
    "UpstreamErrorProblem.allOf[1].errors.minItems": 1,
    "UpstreamErrorProblem.allOf[1].errors.maxItems": items.FANOUT_MAX,
    "UpstreamTimeoutProblem.allOf[1].errors.minItems": 1,
    "UpstreamTimeoutProblem.allOf[1].errors.maxItems": items.FANOUT_MAX,
    # SPEC §3.13
    "ItemIn.name.minLength": 1,
    "ItemIn.name.maxLength": items.NAME_MAX,
    "ItemIn.price.minimum": 0,
    "ItemIn.price.maximum": items.PRICE_MAX,
    # SPEC §3.14, §3.15
    "/cpu.get[n].minimum": 1,
    "/cpu.get[n].maximum": items.CPU_MAX,
    "/cpu.get[n].default": items.CPU_DEFAULT,
    "Cpu.n.minimum": 1,
    "Cpu.n.maximum": items.CPU_MAX,
    "Cpu.result.minimum": 0,
    "Cpu.result.maximum": CPU_MODULUS - 1,
    "TaskIn.n.minimum": 1,
    "TaskIn.n.maximum": items.CPU_MAX,
    "TaskIn.n.default": items.TASK_N_DEFAULT,
    "TaskIn.delay_ms.minimum": 0,
    "TaskIn.delay_ms.maximum": items.DELAY_MAX,
    "TaskIn.delay_ms.default": 0,
    "Task.result.n.minimum": 1,
    "Task.result.n.maximum": items.CPU_MAX,
    "Task.result.result.minimum": 0,
    "Task.result.result.maximum": CPU_MODULUS - 1,
    # SPEC §3.1 (TechEmpower)
    "parameters.Queries.minimum": 1,
    "parameters.Queries.maximum": techempower.QUERIES_MAX,
    "parameters.Queries.default": 1,
    "World.id.minimum": 1,
    "World.id.maximum": techempower.WORLD_ROWS,
    "World.randomNumber.minimum": 1,
    "World.randomNumber.maximum": techempower.WORLD_ROWS,
    "WorldList.minItems": 1,
    "WorldList.maxItems": techempower.QUERIES_MAX,
    # SPEC §3.7 headers, §2.1 problems
    "headers.RateLimitLimit.minimum": 1,
    "headers.RateLimitRemaining.minimum": 0,
    "headers.RateLimitReset.minimum": 1,
    "headers.RetryAfter.minimum": 1,
    "Problem.title.minLength": 1,
    "Problem.status.minimum": 400,
    "Problem.status.maximum": 599,
    "ValidationProblem.allOf[1].errors.minItems": 1,
    "ValidationProblem.allOf[1].errors.items.loc.minItems": 1,
}


def test_bounds_equal_common_items() -> None:
    actual = bounds(load_document())
    mismatched = {
        k: (actual.get(k, "<absent>"), v)
        for k, v in EXPECTED_BOUNDS.items()
        if actual.get(k, "<absent>") != v
    }
    assert not mismatched, f"document value vs. source of truth: {mismatched}"
    unchecked = sorted(set(actual) - set(EXPECTED_BOUNDS))
    assert not unchecked, f"bounds with no source of truth in this test: {unchecked}"


def test_enums_and_limits_equal_common_items() -> None:
    document = load_document()
    schemas = document["components"]["schemas"]
    assert schemas["Category"]["enum"] == list(items.CATEGORIES)
    item_in = items.ItemIn.__struct_fields__
    assert set(schemas["ItemIn"]["properties"]) == set(item_in)
    assert set(schemas["ItemIn"]["required"]) == set(item_in)
    assert set(schemas["TaskIn"]["properties"]) == set(items.TaskIn.__struct_fields__)
    assert set(schemas["Item"]["required"]) == set(items.ITEM_COLUMNS)
    assert schemas["ItemsCsv"]["pattern"] == "^" + ",".join(items.ITEM_COLUMNS) + "\\r\\n"
    # SPEC §2.1's body limit, as the POST /items description states it.
    assert (
        f"{MAX_BODY_BYTES:,} bytes"
        in document["paths"]["/items"]["post"]["requestBody"]["description"]
    )


# --- every operation is served ------------------------------------------------------------------


def _linked_value(document: dict[str, Any], client: httpx.Client, target: str, name: str) -> Any:
    """A value for ``target``'s parameter ``name`` from a response link to it: call the linking
    operation with its example and read ``$response.body#/...`` (e.g. a task that exists)."""
    for method, path, op in operations(document):
        for response in op.get("responses", {}).values():
            for link in resolve(document, response).get("links", {}).values():
                expr = link.get("parameters", {}).get(name)
                if link.get("operationId") != target or not isinstance(expr, str):
                    continue
                resp = _send(document, client, method, path, op)
                assert resp.is_success, f"{method} {path} (link to {target}): {resp.status_code}"
                pointer = expr.removeprefix("$response.body#/")
                return resp.json()[pointer]
    return None


def _send(
    document: dict[str, Any],
    client: httpx.Client,
    method: str,
    path: str,
    op: dict[str, Any],
    path_values: dict[str, Any] | None = None,
) -> httpx.Response:
    url, query, headers = path, {}, {}
    for param in map(lambda p: resolve(document, p), op.get("parameters", [])):
        value = (path_values or {}).get(param["name"], param.get("example"))
        if value is None:
            continue
        if isinstance(value, list):  # style: form, explode: false
            value = ",".join(map(str, value))
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", quote(str(value), safe=""))
        elif param["in"] == "query":
            query[param["name"]] = str(value)
        elif param["in"] == "header":
            headers[param["name"]] = str(value)
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    json_body = body.get("example")
    return client.request(method, url, params=query, headers=headers, json=json_body)


@pytest.mark.conformance
@pytest.mark.per_framework
def test_every_operation_is_served(fuzz_pair: Any, fuzz_server: FuzzServer) -> None:
    """Each operation, called with the document's examples (and, for an operation a response
    links to, a value from that response), gets one of its documented success statuses: the
    route exists on this pair with this method (no 404 or 405), and the examples are right."""
    document = load_document()
    failures = []
    with httpx.Client(base_url=fuzz_server.url, timeout=30.0, verify=TLS) as client:
        for method, path, op in operations(document):
            path_values = {}
            for param in map(lambda p: resolve(document, p), op.get("parameters", [])):
                if param["in"] == "path":
                    linked = _linked_value(document, client, op["operationId"], param["name"])
                    if linked is not None:
                        path_values[param["name"]] = linked
            resp = _send(document, client, method, path, op, path_values)
            documented = {int(s) for s in op["responses"] if s.isdigit() and int(s) < 400}
            if resp.status_code not in documented:
                failures.append(
                    f"{method} {path} → {resp.status_code} (documented success: "
                    f"{sorted(documented)}): {resp.text[:300]}"
                )
    assert not failures, "\n".join(failures)

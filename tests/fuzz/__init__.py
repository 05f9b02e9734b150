"""The OpenAPI document of the contract (``openapi.yaml``) and the schemathesis run driven by it.

``test_openapi`` checks the document itself: valid OpenAPI 3.1, the same routes as SPEC §3,
the same bounds as ``common/items.py``, every operation answered by a running pair.
``test_schemathesis`` fuzzes every pair with it (docs/openapi.md).

Helpers shared by both modules live here (the conftest holds only fixtures and hooks).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from lab.matrix import REPO_ROOT
from tests.support.servers import Server

__all__ = [
    "HTTP_METHODS",
    "OPENAPI_PATH",
    "FuzzServer",
    "Operation",
    "load_document",
    "operations",
    "resolve",
]

OPENAPI_PATH: Path = REPO_ROOT / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

Operation = tuple[str, str, dict[str, Any]]  # (METHOD, path template, operation object)


# The running pair the fuzz suite talks to: the conformance suite's Server.
FuzzServer = Server


@cache
def _load() -> dict[str, Any]:
    # schemathesis's loader reads YAML the way schemathesis itself will: no implicit
    # timestamps, and only true/false as booleans (YAML 1.2).
    import yaml
    from schemathesis.core.deserialization import get_yaml_loader

    with OPENAPI_PATH.open(encoding="utf-8") as fh:
        document = yaml.load(fh, get_yaml_loader())  # a SafeLoader subclass
    assert isinstance(document, dict), f"{OPENAPI_PATH} is not a mapping"
    return document


def load_document() -> dict[str, Any]:
    """The parsed document. Cached: callers must not mutate it (copy first)."""
    return _load()


def operations(document: dict[str, Any] | None = None) -> Iterator[Operation]:
    """Every (METHOD, path, operation) of the document, in document order."""
    doc = document if document is not None else load_document()
    for path, item in doc.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def resolve(document: dict[str, Any], node: Any) -> Any:
    """Follow local ``$ref`` chains (``#/a/b``) to the node they name."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are used: {ref}"
        node = document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node

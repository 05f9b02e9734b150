"""Typed access to the ``[scenarios.*]`` tables of ``matrix.toml``: the benchmark's request
shapes, read by the harness (``bench/``) and by the conformance suite's smoke case, so a
scenario is declared once.

A scenario is one request (method, path, headers, body) with the statuses a correct server
answers, a check of one response (``Check``, made before and after each benchmark cell) and
a check of every response under load (``LoadCheck``, made by wrk's Lua). ``{id}`` in a path
is a random integer in ``ids``; :meth:`Scenario.sample_path` gives the path with the range's
lower bound, for single requests.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from .matrix import MATRIX_FILE

__all__ = [
    "Check",
    "LoadCheck",
    "Offered",
    "Scenario",
    "matrix_table",
    "parse_offered",
    "scenario",
    "scenarios",
]

ID_PLACEHOLDER = "{id}"


@dataclass(frozen=True, slots=True)
class Offered:
    """A fixed rate to offer: ``rps`` requests/s, or ``share`` of the target's own capacity
    (its closed-loop requests/s, measured just before in the same round and server start)."""

    rps: float | None = None
    share: float | None = None

    @property
    def label(self) -> str:
        return f"{self.rps:g}" if self.rps is not None else f"{(self.share or 0) * 100:g}%"


def parse_offered(text: str | float) -> Offered:
    """``"2000"`` (requests/s) or ``"50%"`` (of capacity). Raises ValueError saying why."""
    raw = str(text).strip()
    if raw.endswith("%"):
        try:
            percent = float(raw[:-1])
        except ValueError:
            raise ValueError(f"a rate {raw!r} is N (requests/s) or P% (of capacity)") from None
        if not 0 < percent <= 100:
            raise ValueError(f"a share of capacity is above 0% and at most 100% (got {raw})")
        return Offered(share=percent / 100)
    try:
        return Offered(rps=float(raw))
    except ValueError:
        raise ValueError(f"a rate {raw!r} is N (requests/s) or P% (of capacity)") from None


@dataclass(frozen=True, slots=True)
class Check:
    """What one response must show. Header names are lower case; every field is optional."""

    content_type: str | None = None  # media type, parameters ignored
    headers: dict[str, str] = field(default_factory=dict)  # exact values
    headers_present: tuple[str, ...] = ()
    encoding: str | None = None  # Content-Encoding; the body is decoded before body checks
    body_contains: str | None = None
    json_keys: tuple[str, ...] = ()  # keys of a top-level JSON object
    json_length: int | None = None  # length of a top-level JSON array
    json_lengths: dict[str, int] = field(default_factory=dict)  # key -> length of its array
    ndjson_lines: int | None = None


@dataclass(frozen=True, slots=True)
class LoadCheck:
    """What every response under load must show (checked in Lua, on the body as sent)."""

    body_contains: str | None = None
    header: tuple[str, str] | None = None  # (lower-case name, exact value)
    header_present: str | None = None  # lower-case name every response must carry
    count_header: str | None = None  # lower-case name whose values are counted
    revalidate: bool = False  # send If-None-Match with the last ETag seen (a caching client)


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    doc: str
    method: str
    path: str
    headers: dict[str, str]
    body: str | None
    expect: tuple[int, ...]
    quick: bool
    ids: tuple[int, int] | None
    env: dict[str, str]
    check: Check
    load: LoadCheck
    concurrency: tuple[int, ...] = ()  # replaces the run's concurrency levels when set
    prime: bool = False  # request every id in ``ids`` once before the cell (fills a cache)
    experiment_only: bool = False  # run only as part of a technique experiment, not the matrix
    # A control served by the floors alone (``json-work``): never asked of a pair, and run only
    # when a run names it, on the floors whose ``scenarios`` list it.
    floor_only: bool = False
    # Past the server's capacity on purpose: a response that misses the load check is counted
    # (good answers per second leave it out), not a failure; ``expect`` lists the statuses
    # the contract answers under overload (a shed 503, an all-timed-out 504).
    overload: bool = False
    # The fixed rates `lab bench --rate declared` offers this scenario (requests/s or shares
    # of each target's capacity); empty: none declared.
    rates: tuple[Offered, ...] = ()

    @property
    def in_matrix(self) -> bool:
        """Played by a matrix run that names no scenario: not experiment-only, not the
        floors' control (both run only when named)."""
        return not (self.experiment_only or self.floor_only)

    def paths(self) -> list[str]:
        """The path for every id of the range (for priming a cache)."""
        if self.ids is None:
            return [self.path]
        return [
            self.path.replace(ID_PLACEHOLDER, str(i)) for i in range(self.ids[0], self.ids[1] + 1)
        ]

    def sample_path(self) -> str:
        """The path of one concrete request: ``{id}`` is the lower bound of ``ids``."""
        if self.ids is None:
            return self.path
        return self.path.replace(ID_PLACEHOLDER, str(self.ids[0]))

    @property
    def config(self) -> str:
        """The server configuration this scenario needs, as a stable key ("" = default)."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.env.items()))


@cache
def _load() -> dict[str, Any]:
    with MATRIX_FILE.open("rb") as fh:
        return tomllib.load(fh)


def matrix_table(name: str) -> dict[str, Any]:
    """A top-level table of ``matrix.toml`` (``bench``, ``floors``, ``scenarios``)."""
    table: dict[str, Any] = _load().get(name, {})
    return table


def _check(spec: dict[str, Any]) -> Check:
    return Check(
        content_type=spec.get("content_type"),
        headers={k.lower(): str(v) for k, v in spec.get("headers", {}).items()},
        headers_present=tuple(h.lower() for h in spec.get("headers_present", ())),
        encoding=spec.get("encoding"),
        body_contains=spec.get("body_contains"),
        json_keys=tuple(spec.get("json_keys", ())),
        json_length=spec.get("json_length"),
        json_lengths={k: int(v) for k, v in spec.get("json_lengths", {}).items()},
        ndjson_lines=spec.get("ndjson_lines"),
    )


def _load_check(spec: dict[str, Any]) -> LoadCheck:
    header = None
    if "header" in spec:
        name, _, value = str(spec["header"]).partition(":")
        header = (name.strip().lower(), value.strip())
    present = spec.get("header_present")
    count = spec.get("count_header")
    return LoadCheck(
        body_contains=spec.get("body_contains"),
        header=header,
        header_present=present.lower() if present else None,
        count_header=count.lower() if count else None,
        revalidate=bool(spec.get("revalidate", False)),
    )


def _scenario(name: str, spec: dict[str, Any]) -> Scenario:
    path = str(spec["path"])
    ids = spec.get("ids")
    if (ID_PLACEHOLDER in path) != (ids is not None):
        raise ValueError(f"scenario {name}: a path with {ID_PLACEHOLDER} needs ids, and only then")
    if ids is not None and (len(ids) != 2 or int(ids[0]) > int(ids[1])):
        raise ValueError(f"scenario {name}: ids must be [low, high]")
    revalidate = bool(spec.get("load", {}).get("revalidate", False))
    if revalidate and ids is not None:
        raise ValueError(
            f"scenario {name}: revalidate needs one fixed path (wrk's response() "
            "cannot tell which request a response answers)"
        )
    if spec.get("overload") and not spec.get("load", {}).get("body_contains"):
        raise ValueError(f"scenario {name}: overload needs load.body_contains (what is good)")
    if spec.get("floor_only") and (spec.get("quick") or spec.get("experiment_only")):
        raise ValueError(f"scenario {name}: floor_only runs only when named (not quick)")
    if spec.get("prime") and (ids is None or int(ids[1]) - int(ids[0]) >= 10_000):
        raise ValueError(f"scenario {name}: prime needs ids, at most 10,000 of them")
    return Scenario(
        id=name,
        doc=spec.get("doc", ""),
        method=spec.get("method", "GET"),
        path=path,
        headers={str(k): str(v) for k, v in spec.get("headers", {}).items()},
        body=spec.get("body"),
        expect=tuple(int(s) for s in spec.get("expect", (200,))),
        quick=bool(spec.get("quick", False)),
        ids=None if ids is None else (int(ids[0]), int(ids[1])),
        env={str(k): str(v) for k, v in spec.get("env", {}).items()},
        check=_check(spec.get("check", {})),
        load=_load_check(spec.get("load", {})),
        concurrency=tuple(int(c) for c in spec.get("concurrency", ())),
        prime=bool(spec.get("prime", False)),
        experiment_only=bool(spec.get("experiment_only", False)),
        floor_only=bool(spec.get("floor_only", False)),
        overload=bool(spec.get("overload", False)),
        rates=tuple(parse_offered(r) for r in spec.get("rates", ())),
    )


@cache
def scenarios() -> tuple[Scenario, ...]:
    """Every declared scenario, in the file's order."""
    return tuple(_scenario(name, spec) for name, spec in matrix_table("scenarios").items())


def scenario(name: str) -> Scenario:
    for sc in scenarios():
        if sc.id == name:
            return sc
    raise KeyError(f"unknown scenario {name!r}; known: {', '.join(s.id for s in scenarios())}")

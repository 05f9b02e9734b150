"""Statistics over repeats, the failed/noisy rules, ranking and floor ratios. Pure functions
over plain data (cell records as written to disk), so they are tested without any server.

- A cell (one repeat) *fails* when any response had a status its scenario does not expect,
  any socket error occurred (connect, read, write, timeout), any response under load missed
  its Lua check, the check before or after it failed, or no request completed.
- A summary row (one target x scenario x concurrency, over its repeats) reports the median
  of each figure over the repeats that finished ``ok``. Its *spread* is
  ``(max - min) / median`` of requests/s (with 2 or 3 repeats, the range is the only honest
  dispersion; an IQR needs more). A row whose spread exceeds the noisy threshold is *noisy*:
  still ranked, but flagged. One repeat: spread ``null``, noisy ``false`` (not assessed).
- A row is ranked only when all its repeats are ``ok``; failed and errored rows never are.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "cell_failures",
    "good_rps",
    "latency_coverage",
    "median",
    "per_round_ratio",
    "percentile",
    "spread",
    "summarise",
]

SOCKET_ERRORS = ("connect", "read", "write", "timeout")
CENSORED_BELOW = 0.5  # latency_coverage under this: the latency figures are censored
LATENCY_KEYS = ("p50", "p90", "p99", "p99_9", "max")


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (at least one)."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def spread(values: Sequence[float]) -> float | None:
    """``(max - min) / median``; None with fewer than two values or a zero median."""
    if len(values) < 2:
        return None
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else None


def latency_coverage(rps: float, mean_latency_us: float, connections: int) -> float | None:
    """Measured mean latency over what Little's law says it must be in a closed loop where
    every connection always has a request in flight (``connections / rps``). Close to 1 in a
    steady state; well below 1 when responses slower than what is left of the run never
    completed and so never entered the latency figures (a short run on a deep queue): the
    percentiles are then censored, too low, and the cell is flagged ``latency-censored``."""
    if rps <= 0 or connections <= 0:
        return None
    return mean_latency_us / 1e6 * rps / connections


def cell_failures(
    load: Mapping[str, Any],
    expect: Iterable[int],
    checks: Mapping[str, Mapping[str, Any] | None],
    *,
    overload: bool = False,
) -> list[str]:
    """Why a measured cell failed (empty: it did not). ``load`` is the load tool's report as
    written in the cell (``statuses`` keyed by strings), ``checks`` the before/after checks.
    In an ``overload`` scenario a response that missed the in-load check is an answer the
    contract allows (a shed 503, a 504), counted by :func:`good_rps`, not a failure."""
    reasons: list[str] = []
    allowed = {int(s) for s in expect}
    unexpected = {
        int(k): int(v)
        for k, v in load.get("statuses", {}).items()
        if int(k) not in allowed and int(v) > 0
    }
    for status, count in sorted(unexpected.items()):
        reasons.append(f"{count} response(s) with unexpected status {status}")
    errors = load.get("errors", {})
    for kind in SOCKET_ERRORS:
        if int(errors.get(kind, 0)):
            reasons.append(f"{errors[kind]} socket error(s): {kind}")
    if int(load.get("mismatches", 0)) and not overload:
        reasons.append(f"{load['mismatches']} response(s) failed the in-load check")
    if not int(load.get("requests", 0)):
        reasons.append("no request completed")
    elif load.get("response_hook", True) and not load.get("statuses"):
        reasons.append("no status was counted")
    for when in ("before", "after"):
        check = checks.get(when)
        if check is not None and not check.get("ok", False):
            reasons.append(f"check {when}: " + "; ".join(check.get("problems", [])))
    return reasons


def good_rps(load: Mapping[str, Any]) -> float | None:
    """Requests/s of the responses that passed the in-load check: in an overload scenario,
    the answers that did the job (a 503 or a 504 is quick to make and does nothing for its
    client). Equal to requests/s for a cell with no misses; None when nothing was checked."""
    responses = int(load.get("responses", 0))
    if not responses or not load.get("response_hook", True):
        return None
    good = responses - int(load.get("mismatches", 0))
    return float(load["rps"]) * good / responses


def _row_key(cell: Mapping[str, Any]) -> tuple[str, str, int]:
    return (cell["target"]["id"], cell["scenario"]["id"], int(cell["concurrency"]))


def summarise(
    cells: Iterable[Mapping[str, Any]],
    *,
    noisy_threshold: float,
    planned_repeats: int | None = None,
) -> list[dict[str, Any]]:
    """One row per target x scenario x concurrency, ranked and read against its floors."""
    groups: dict[tuple[str, str, int], list[Mapping[str, Any]]] = {}
    for cell in cells:
        groups.setdefault(_row_key(cell), []).append(cell)
    rows = [
        _row(sorted(g, key=lambda c: int(c["repeat"])), noisy_threshold, planned_repeats)
        for g in groups.values()
    ]
    rows.sort(key=lambda r: (r["scenario"], r["concurrency"], r["role"] != "pair", r["target"]))
    _rank(rows)
    _floor_ratios(rows)
    return rows


def _row(cells: list[Mapping[str, Any]], threshold: float, planned: int | None) -> dict[str, Any]:
    first = cells[0]
    ok = [c for c in cells if c["outcome"] == "ok"]
    outcomes = [c["outcome"] for c in cells]
    outcome = (
        "error"
        if "error" in outcomes
        else "failed"
        if "failed" in outcomes
        else "ok"
        if planned is None or len(cells) >= planned
        else "incomplete"
    )
    rps = [float(c["load"]["rps"]) for c in ok]
    sp = spread(rps)
    latency = {k: median([float(c["load"]["latency_us"][k]) for c in ok]) for k in LATENCY_KEYS}
    cpu = [
        float(c["server"]["cpu_s_per_1k"])
        for c in ok
        if c.get("server") and c["server"].get("cpu_s_per_1k") is not None
    ]
    # the kernel's share of the server's CPU (cells written before it have no system_s)
    system_share = [
        float(c["server"]["system_s"]) / float(c["server"]["cpu_s"])
        for c in ok
        if c.get("server") and c["server"].get("system_s") is not None and c["server"]["cpu_s"]
    ]
    # (voluntary, involuntary) context switches of the server's threads per request
    switches = [
        c["server"]["switches_per_req"]
        for c in ok
        if (c.get("server") or {}).get("switches_per_req")
    ]
    rss = [
        int(c["server"]["peak_rss_bytes"])
        for c in ok
        if c.get("server") and c["server"].get("peak_rss_bytes") is not None
    ]
    bpr = [
        float(c["load"]["bytes_per_response"])
        for c in ok
        if c["load"].get("bytes_per_response") is not None
    ]
    overload = bool(first["scenario"].get("overload"))
    good = [g for g in (good_rps(c["load"]) for c in ok) if g is not None] if overload else []
    target = first["target"]
    probes = [c["probe"] for c in ok if c.get("probe") and c["probe"].get("latency_ms")]
    return {
        "key": f"{target['id']}__{first['scenario']['id']}__c{first['concurrency']}",
        "target": target["id"],
        "role": target["role"],
        "framework": target.get("framework"),
        "app": target.get("app_name"),
        "server": target.get("server"),
        "kind": target.get("kind"),
        "scenario": first["scenario"]["id"],
        "concurrency": int(first["concurrency"]),
        "repeats": len(cells),
        "repeats_ok": len(ok),
        "outcome": outcome,
        "reasons": sorted({r for c in cells for r in c.get("reasons", [])}),
        "rps": {
            "by_round": {str(c["repeat"]): float(c["load"]["rps"]) for c in ok},
            "median": median(rps),
            "min": min(rps, default=None),
            "max": max(rps, default=None),
            "spread": sp,
        },
        "noisy": sp is not None and sp > threshold,
        "good_rps": None
        if not good
        else {"median": median(good), "min": min(good), "max": max(good), "spread": spread(good)},
        "latency_us": latency,
        "cpu_s_per_1k": median(cpu),
        "cpu_system_share": _rounded(median(system_share)),
        "voluntary_switches_per_req": _rounded(median([float(v) for v, _ in switches])),
        "involuntary_switches_per_req": _rounded(median([float(i) for _, i in switches])),
        "peak_rss_bytes": max(rss, default=None),
        "bytes_per_response": median(bpr),
        "client_saturated": any((c.get("client") or {}).get("saturated") for c in cells),
        "latency_censored": any("latency-censored" in c.get("flags", ()) for c in cells),
        "rank": None,
        "floor_targets": dict(target.get("floors") or {}),
        "floors": {"server": None, "framework": None},
        "experiment": target.get("experiment"),
        "variant": target.get("variant"),
        "pair": target.get("pair"),
        "statuses": _summed(c["load"].get("statuses") for c in ok),
        "header_counts": _summed(c["load"].get("header_counts") for c in ok),
        "probe": None
        if not probes
        else {
            "path": probes[0]["path"],
            "p50_ms": median([float(p["latency_ms"]["p50"]) for p in probes]),
            "p99_ms": median([float(p["latency_ms"]["p99"]) for p in probes]),
            "requests": sum(int(p["requests"]) for p in probes),
            "errors": sum(int(p["errors"]) for p in probes),
        },
    }


def _summed(tables: Iterable[Mapping[str, Any] | None]) -> dict[str, int]:
    """Per-key totals of count tables (statuses, header values) over repeats."""
    total: dict[str, int] = {}
    for table in tables:
        for key, count in (table or {}).items():
            total[str(key)] = total.get(str(key), 0) + int(count)
    return dict(sorted(total.items()))


def _rank(rows: list[dict[str, Any]]) -> None:
    """Rank within scenario x concurrency, pairs and floors separately; ok rows only."""
    boards: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["outcome"] == "ok" and row["rps"]["median"] is not None:
            boards.setdefault((row["scenario"], row["concurrency"], row["role"]), []).append(row)
    for board in boards.values():
        board.sort(key=lambda r: -float(r["rps"]["median"]))
        for i, row in enumerate(board, start=1):
            row["rank"] = i


def per_round_ratio(
    row: Mapping[str, Any], floor: Mapping[str, Any]
) -> dict[str, float | int] | None:
    """The ratio taken round by round (this row's requests/s over the floor's in the same
    round, which ran next to it) and its median, min and max over the rounds both have: a
    drift of the machine between rounds moves both sides of each ratio together."""
    mine = (row.get("rps") or {}).get("by_round") or {}
    theirs = (floor.get("rps") or {}).get("by_round") or {}
    ratios = [mine[r] / theirs[r] for r in sorted(mine) if theirs.get(r)]
    mid = median(ratios)
    if mid is None:
        return None
    return {
        "median": round(mid, 4),
        "min": round(min(ratios), 4),
        "max": round(max(ratios), 4),
        "rounds": len(ratios),
    }


def _floor_ratios(rows: list[dict[str, Any]]) -> None:
    """Fill ``floors`` with this row's requests/s over each of its floors' (same server,
    scenario and concurrency): ``server`` = the raw callable of its interface kind,
    ``framework`` = its framework's hello world; ``rps_ratio`` is the ratio of the medians,
    ``per_round`` the ratios round by round (:func:`per_round_ratio`). Only ok rows are read
    against ok floors."""
    by_key = {(r["target"], r["scenario"], r["concurrency"]): r for r in rows}
    for row in rows:
        refs = row.get("floor_targets") or {}
        for role, floor_id in refs.items():
            floor = by_key.get((floor_id, row["scenario"], row["concurrency"]))
            ratio, rounds = None, None
            if (
                floor is not None
                and floor["outcome"] == "ok"
                and row["outcome"] == "ok"
                and floor["rps"]["median"]
                and row["rps"]["median"] is not None
            ):
                ratio = round(float(row["rps"]["median"]) / float(floor["rps"]["median"]), 4)
                rounds = per_round_ratio(row, floor)
            row["floors"][role] = {"target": floor_id, "rps_ratio": ratio, "per_round": rounds}

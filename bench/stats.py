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
- A fixed-rate row (``lab bench --rate``) is one more key: the rate as offered (``1000``
  requests/s, or ``50%`` of each target's own capacity, which is a different number of
  requests/s for each target and round). It is ranked by
  the server's CPU per request (lower first), and only when every repeat held the rate
  (achieved at least :data:`HELD_FRACTION` of offered); a cell below it is flagged
  ``rate-not-held``. Its cost is also read against its floors, round by round.
- Within a board, ``tied_with`` names the ranked rows whose ``ci95`` (of the figure ranked
  by) overlaps a row's: the data do not order those rows, whatever their ranks say.
- ``ci95`` is a Student-t interval of the mean over the rounds (paired per round for ratios):
  with 3 to 10 rounds it is the honest choice; a bootstrap needs more.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "GENERATOR_LAG_US",
    "HELD_FRACTION",
    "cell_failures",
    "ci95",
    "fixed_rate_cost",
    "good_rps",
    "latency_coverage",
    "median",
    "offered",
    "offered_order",
    "overlap",
    "paired_ratio",
    "per_round_ratio",
    "percentile",
    "rate_held",
    "spread",
    "summarise",
]

SOCKET_ERRORS = ("connect", "read", "write", "timeout")
CENSORED_BELOW = 0.5  # latency_coverage under this: the latency figures are censored
LATENCY_KEYS = ("p50", "p90", "p99", "p99_9", "max")
HELD_FRACTION = 0.98  # a fixed-rate cell achieving less did not hold its rate
# The generator's p99 lag in sending a request that had a free connection: above a
# millisecond the client, not the server, set the pace.
GENERATOR_LAG_US = 1000.0
# Student's t at 97.5 % for n - 1 degrees of freedom (n = 2..30), for ci95
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
)


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


def ci95(values: Sequence[float]) -> list[float] | None:
    """Student-t 95 % interval of the mean, [low, high]; None with fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    t = _T975[n - 2] if n - 2 < len(_T975) else 1.96
    half = t * statistics.stdev(values) / math.sqrt(n)
    return [round(mean - half, 4), round(mean + half, 4)]


def rate_held(achieved_rps: float, offered_rps: float) -> bool:
    return achieved_rps >= HELD_FRACTION * offered_rps


def fixed_rate_cost(
    requests: int,
    *,
    server_cpu_s: float | None,
    services_cpu_s: Mapping[str, float],
    unmeasured: Sequence[str],
) -> dict[str, Any]:
    """A fixed-rate cell's CPU per request, in microseconds: the server's process tree, and
    the services' (PostgreSQL, Redis, the upstream) summed, over the measured window."""

    def per_request(cpu_s: float | None) -> float | None:
        return None if cpu_s is None or not requests else round(cpu_s / requests * 1e6, 3)

    return {
        "server_cpu_us_per_request": per_request(server_cpu_s),
        "services_cpu_us_per_request": per_request(sum(services_cpu_s.values()))
        if services_cpu_s
        else None,
        "services_cpu_us_by_service": {
            k: per_request(v) for k, v in sorted(services_cpu_s.items())
        },
        "services_unmeasured": list(unmeasured),
    }


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


def offered(cell: Mapping[str, Any]) -> str | None:
    """A fixed-rate cell's (or row's) rate as offered (``1000``, ``50%``); None for a
    closed-loop one."""
    label = cell.get("offered")
    rate = cell.get("rate")
    if label is None and rate is not None:  # written before shares of capacity existed
        label = f"{float(rate):g}"
    return None if label is None else str(label)


def _row_key(cell: Mapping[str, Any]) -> tuple[str, str, int, str | None]:
    return (cell["target"]["id"], cell["scenario"]["id"], int(cell["concurrency"]), offered(cell))


def summarise(
    cells: Iterable[Mapping[str, Any]],
    *,
    noisy_threshold: float,
    planned_repeats: int | None = None,
) -> list[dict[str, Any]]:
    """One row per target x scenario x concurrency, ranked and read against its floors."""
    groups: dict[tuple[str, str, int, str | None], list[Mapping[str, Any]]] = {}
    for cell in cells:
        groups.setdefault(_row_key(cell), []).append(cell)
    rows = [
        _row(sorted(g, key=lambda c: int(c["repeat"])), noisy_threshold, planned_repeats)
        for g in groups.values()
    ]
    rows.sort(
        key=lambda r: (
            r["scenario"],
            r["concurrency"],
            offered_order(r["offered"]),
            r["role"] != "pair",
            r["target"],
        )
    )
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
    label = offered(first)
    suffix = "" if label is None else "__q" + label.replace("%", "pct")
    rates = [float(c["rate"]) for c in ok if c.get("rate") is not None]
    return {
        "key": f"{target['id']}__{first['scenario']['id']}__c{first['concurrency']}{suffix}",
        "target": target["id"],
        "role": target["role"],
        "framework": target.get("framework"),
        "app": target.get("app_name"),
        "server": target.get("server"),
        "kind": target.get("kind"),
        "scenario": first["scenario"]["id"],
        "concurrency": int(first["concurrency"]),
        # a fixed-rate row: the rate as offered, the requests/s that meant (for a share of
        # capacity, each round's own), and the capacity it was a share of
        "offered": label,
        "rate": median(rates),
        "capacity_share": first.get("capacity_share"),
        "capacity_rps": median(
            [float(c["capacity_rps"]) for c in ok if c.get("capacity_rps") is not None]
        ),
        "rate_held": None
        if label is None
        else bool(ok) and not any("rate-not-held" in c.get("flags", ()) for c in cells),
        "cost": None if label is None else _cost(ok),
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
            "ci95": ci95(rps),
        },
        "noisy": sp is not None and sp > threshold,
        "good_rps": None
        if not good
        else {
            "median": median(good),
            "min": min(good),
            "max": max(good),
            "spread": spread(good),
            "ci95": ci95(good),
        },
        "latency_us": latency,
        # the tail's interval over the rounds: a fixed-rate row's p99 is a headline figure
        "latency_ci95_us": {
            k: ci95([float(c["load"]["latency_us"][k]) for c in ok]) for k in ("p50", "p99")
        },
        "requests_per_connection": _per_connection(ok),
        "cpu_s_per_1k": median(cpu),
        "cpu_system_share": _rounded(median(system_share)),
        "voluntary_switches_per_req": _rounded(median([float(v) for v, _ in switches])),
        "involuntary_switches_per_req": _rounded(median([float(i) for _, i in switches])),
        "peak_rss_bytes": max(rss, default=None),
        "bytes_per_response": median(bpr),
        "client_saturated": any((c.get("client") or {}).get("saturated") for c in cells),
        "latency_censored": any("latency-censored" in c.get("flags", ()) for c in cells),
        "rank": None,
        "tied_with": [],  # ranked rows of the same board whose ci95 overlaps this one's
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


def offered_order(label: str | None) -> tuple[int, float]:
    """Closed loop first, then absolute rates ascending, then shares of capacity."""
    if label is None:
        return (0, 0.0)
    if label.endswith("%"):
        return (2, float(label[:-1]))
    return (1, float(label))


# A connection served under this share of the median connection's requests, in some round,
# was starved: the server left it waiting while others were served.
STARVED_SHARE = 0.25


def _per_connection(ok: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Requests per connection over a row's rounds (bench/fairness.py): the least any
    connection got in any round, the median round's median, the most; and the worst round's
    least over its median, the figure that says a connection starved."""
    seen = [c["load"].get("requests_per_connection") for c in ok]
    seen = [s for s in seen if s]
    if not seen:
        return None
    shares = [s["min_share_of_median"] for s in seen if s.get("min_share_of_median") is not None]
    least = min(shares, default=None)
    # a server that closes its connections leaves short-lived sockets: no shares to judge
    reconnected = any(s.get("reconnected") for s in seen)
    return {
        "min": min(s["min"] for s in seen),
        "median": median([s["median"] for s in seen]),
        "max": max(s["max"] for s in seen),
        "min_share_of_median": least,
        "starved": least is not None and least < STARVED_SHARE and not reconnected,
        "reconnected": reconnected,
        "rounds": len(seen),
    }


def _cost(ok: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The fixed-rate costs of a row's ok cells: median, per round and ci95 of each."""
    out: dict[str, Any] = {}
    for key in ("server_cpu_us_per_request", "services_cpu_us_per_request"):
        by_round = {
            str(c["repeat"]): float(c["cost"][key])
            for c in ok
            if (c.get("cost") or {}).get(key) is not None
        }
        values = list(by_round.values())
        out[key] = {
            "median": _rounded(median(values), 3),
            "by_round": by_round,
            "spread": _rounded(spread(values)),
            "ci95": ci95(values),
        }
    out["server_cpu_ratio_to_raw"] = None  # filled by _floor_ratios
    out["instructions_per_request"] = None  # filled by fold_instructions where counted
    server = out["server_cpu_us_per_request"]["median"]
    services = out["services_cpu_us_per_request"]["median"]
    # What a core could carry if this CPU per request were all it did: an estimate from a
    # load below capacity, where an event loop wakes up for fewer requests at a time than at
    # saturation (docs/reading-results.md measures how far off it is); and the share of the
    # whole CPU per request that PostgreSQL, Redis and the upstream spent.
    out["derived_rps_per_core"] = round(1e6 / server, 1) if server else None
    out["services_share"] = (
        round(services / (server + services), 4)
        if server is not None and services is not None and server + services > 0
        else None
    )
    return out


def _summed(tables: Iterable[Mapping[str, Any] | None]) -> dict[str, int]:
    """Per-key totals of count tables (statuses, header values) over repeats."""
    total: dict[str, int] = {}
    for table in tables:
        for key, count in (table or {}).items():
            total[str(key)] = total.get(str(key), 0) + int(count)
    return dict(sorted(total.items()))


def _rank(rows: list[dict[str, Any]]) -> None:
    """Rank within scenario x concurrency, pairs and floors separately; ok rows only."""
    boards: dict[tuple[str, int, str | None, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["outcome"] != "ok" or row["rps"]["median"] is None:
            continue
        if row["offered"] is not None and not (row["rate_held"] and _server_cost(row) is not None):
            continue
        boards.setdefault(
            (row["scenario"], row["concurrency"], row["offered"], row["role"]), []
        ).append(row)
    for (_, _, label, _), board in boards.items():
        if label is None:
            board.sort(key=lambda r: -float(_ranked_rps(r)["median"]))
        else:
            board.sort(key=lambda r: float(_server_cost(r) or 0.0))
        for i, row in enumerate(board, start=1):
            row["rank"] = i
        # A rank is a result only where the intervals part: name the rows each is tied with.
        for row in board:
            row["tied_with"] = [
                other["target"]
                for other in board
                if other is not row and overlap(_ranked_ci(row), _ranked_ci(other))
            ]


def _ranked_rps(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """The requests/s a closed-loop row is ranked by: in an overload scenario, the good
    answers' (a shed 503 or a 504 is counted, not rewarded), else every answer's."""
    good: Mapping[str, Any] | None = row.get("good_rps")
    rps: Mapping[str, Any] = row["rps"]
    return good if good and good.get("median") is not None else rps


def _ranked_ci(row: Mapping[str, Any]) -> list[float] | None:
    """The interval of the figure a row is ranked by: requests/s (good ones in an overload
    scenario), or at a fixed rate the server's CPU per request."""
    if row.get("offered") is None:
        return _ranked_rps(row).get("ci95")
    cost = (row.get("cost") or {}).get("server_cpu_us_per_request") or {}
    return cost.get("ci95")


def overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two intervals ``[low, high]`` share a point; False when either is missing."""
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _server_cost(row: Mapping[str, Any]) -> float | None:
    cost = row.get("cost") or {}
    value = (cost.get("server_cpu_us_per_request") or {}).get("median")
    return None if value is None else float(value)


def per_round_ratio(row: Mapping[str, Any], floor: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ratio taken round by round (this row's requests/s over the floor's in the same
    round, which ran next to it) and its median, min and max over the rounds both have: a
    drift of the machine between rounds moves both sides of each ratio together."""
    return paired_ratio(
        (row.get("rps") or {}).get("by_round") or {},
        (floor.get("rps") or {}).get("by_round") or {},
    )


def paired_ratio(mine: Mapping[str, float], theirs: Mapping[str, float]) -> dict[str, Any] | None:
    """Ratios of two by-round tables, paired by round: median, min, max, ci95."""
    ratios = [mine[r] / theirs[r] for r in sorted(mine) if theirs.get(r)]
    mid = median(ratios)
    if mid is None:
        return None
    return {
        "median": round(mid, 4),
        "min": round(min(ratios), 4),
        "max": round(max(ratios), 4),
        "rounds": len(ratios),
        "ci95": ci95(ratios),
    }


# The raw callable's scenario that a pair's other scenarios are normalised by: what this
# server costs for its least request, measured beside the pair in the same round.
RAW_UNIT_SCENARIO = "json"


def _floor_ratios(rows: list[dict[str, Any]]) -> None:
    """Fill ``floors`` with this row's requests/s over each of its floors' (same server,
    scenario and concurrency): ``server`` = the raw callable of its interface kind,
    ``framework`` = its framework's hello world; ``rps_ratio`` is the ratio of the medians,
    ``per_round`` the ratios round by round (:func:`per_round_ratio`). Only ok rows are read
    against ok floors."""
    by_key = {(r["target"], r["scenario"], r["concurrency"], r["offered"]): r for r in rows}
    for row in rows:
        refs = row.get("floor_targets") or {}
        for role, floor_id in refs.items():
            found = by_key.get((floor_id, row["scenario"], row["concurrency"], row["offered"]))
            if found is None and role == "server" and row["cost"] is not None:
                # The raw callable serves no /db: at a fixed rate, a scenario it cannot serve
                # is costed against its RAW_UNIT_SCENARIO cell at the same load (saturation
                # rows keep to same-scenario ratios: their table says so).
                found = by_key.get(
                    (floor_id, RAW_UNIT_SCENARIO, row["concurrency"], row["offered"])
                )
            # only ok rows are read against ok floors
            both_ok = found is not None and found["outcome"] == "ok" and row["outcome"] == "ok"
            floor = found if both_ok else None
            ratio, rounds = None, None
            if floor is not None and floor["rps"]["median"] and row["rps"]["median"] is not None:
                ratio = round(float(row["rps"]["median"]) / float(floor["rps"]["median"]), 4)
                rounds = per_round_ratio(row, floor)
            row["floors"][role] = {
                "target": floor_id,
                "scenario": None if floor is None else floor["scenario"],
                "rps_ratio": ratio,
                "per_round": rounds,
            }
            if row["cost"] is not None:
                # at a fixed rate the figure to read against the floor is CPU per request
                cost_ratio = (
                    paired_ratio(
                        row["cost"]["server_cpu_us_per_request"]["by_round"],
                        floor["cost"]["server_cpu_us_per_request"]["by_round"],
                    )
                    if floor is not None and floor["cost"] is not None
                    else None
                )
                row["floors"][role]["cpu_ratio"] = cost_ratio
                if role == "server":
                    row["cost"]["server_cpu_ratio_to_raw"] = cost_ratio


def fold_instructions(
    rows: list[dict[str, Any]], per_request: Mapping[tuple[str, str], float]
) -> None:
    """Give each fixed-rate row ``cost.instructions_per_request``: its target's count on the
    same scenario under callgrind (one request at a time, so one figure for every rate)."""
    for row in rows:
        if row.get("cost") is not None:
            count = per_request.get((row["target"], row["scenario"]))
            row["cost"]["instructions_per_request"] = None if count is None else round(count)

"""``docs/claims.md`` from ``docs/claims.toml`` and one run: each claim of the articles the
lab grew from, the lab's reading of it, and a verdict computed from the run's numbers.

The verdict rule (docs/claims-method.md), for a comparison of ``variant`` over ``over``:
the measured factor ``f`` is how many times better ``variant`` is on the claim's metric
(requests/s higher, latency, CPU, memory and bytes lower). The noise is the larger
requests/s spread of the two rows (max - min over median, from the repeats); for a claim on
good answers per second, the larger spread of that figure.

- ``holds``: ``f`` reaches the claimed factor (or, for a claim of "some improvement", ``f``
  exceeds ``1 + noise``);
- ``holds partly``: ``1 + noise < f`` but below the claimed factor;
- ``does not hold``: ``f <= 1 + noise`` (no effect the run can tell from noise, or the
  opposite effect).

A figure ("tens of thousands of requests per second") is compared directly, a saving ("up
to 80%") as the fraction saved; untestable claims and bugs in the articles' code carry
their reason or the test that demonstrates the bug.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _data as d
from ._data import Row, Run
from .experiments import lookup, metric_value

__all__ = ["Verdict", "judge", "markdown"]

LOWER_IS_BETTER = frozenset({"p50", "p99", "cpu", "rss", "bytes", "probe_p99"})
UNITS = {
    "rps": ("req/s", 1.0, "{:,.0f}"),
    "good_rps": ("good answers/s", 1.0, "{:,.0f}"),
    "p50": ("ms p50", 1000.0, "{:,.2f}"),
    "p99": ("ms p99", 1000.0, "{:,.2f}"),
    "cpu": ("CPU ms/1k", 0.001, "{:,.0f}"),
    "rss": ("MiB peak RSS", float(2**20), "{:,.0f}"),
    "bytes": ("B/resp", 1.0, "{:,.0f}"),
    "probe_p99": ("ms probe p99", 1.0, "{:,.2f}"),
}


@dataclass(frozen=True)
class Verdict:
    label: str  # holds | holds partly | does not hold | not measured | cannot be tested here | bug
    measured: str  # the numbers behind it, one line


def _fmt(metric: str, value: float) -> str:
    unit, scale, fmt = UNITS[metric]
    return f"{fmt.format(value / scale)} {unit}"


def _noise(*rows: Row, metric: str = "rps") -> float:
    """The larger spread of the rows: of good answers/s for that metric, else of requests/s."""
    key = "good_rps" if metric == "good_rps" else "rps"
    return max(float((r.get(key) or {}).get("spread") or 0.0) for r in rows)


def _rows(run: Run, claim: dict[str, Any], *names: str) -> list[Row | None]:
    """The rows of the named variants on the claim's scenario; a variant that ran another
    scenario (the uncompressed baseline of the codecs) is read on its only one."""
    found: list[Row | None] = []
    for name in names:
        scenario = (
            claim.get("over_scenario", claim["scenario"]) if name == "over" else claim["scenario"]
        )
        row = lookup(run, claim["experiment"], claim[name], scenario)
        if row is None:
            own = [
                r
                for r in run.rows
                if r.get("experiment") == claim["experiment"] and r.get("variant") == claim[name]
            ]
            row = own[0] if len(own) == 1 else None
        found.append(row)
    return found


def judge(run: Run, claim: dict[str, Any]) -> Verdict:
    if "untestable" in claim:
        return Verdict("cannot be tested here", str(claim["untestable"]))
    if "bug" in claim:
        return Verdict("bug in the article's code", str(claim["bug"]))
    metric = str(claim.get("metric", "rps"))
    if "at_least" in claim or "at_most" in claim:
        (row,) = _rows(run, claim, "variant")
        value = None if row is None or row["outcome"] != "ok" else metric_value(row, metric)
        if value is None:
            return Verdict("not measured", "the run has no ok row for it")
        bound = float(claim.get("at_least", claim.get("at_most", 0)))
        ok = value >= bound if "at_least" in claim else value <= bound
        sign = ">=" if "at_least" in claim else "<="
        shown = _fmt(metric, value)
        return Verdict(
            "holds" if ok else "does not hold",
            f"{claim['variant']} on {claim['scenario']}: {shown} (claim: {sign} "
            f"{_fmt(metric, bound * UNITS[metric][1])})",
        )
    row, over = _rows(run, claim, "variant", "over")
    if row is None or over is None or row["outcome"] != "ok" or over["outcome"] != "ok":
        return Verdict("not measured", "the run has no ok rows for both variants")
    a, b = metric_value(row, metric), metric_value(over, metric)
    if a is None or b is None or a <= 0 or b <= 0:
        return Verdict("not measured", f"no {metric} figure in the run")
    shown = f"{claim['variant']} {_fmt(metric, a)} vs {claim['over']} {_fmt(metric, b)}"
    if "claimed_saving" in claim:
        saving = 1 - a / b
        target = float(claim["claimed_saving"])
        label = "holds" if saving >= target else "holds partly" if saving > 0 else "does not hold"
        return Verdict(label, f"{shown}: {saving:.0%} saved (claim: {target:.0%})")
    factor = b / a if metric in LOWER_IS_BETTER else a / b
    noise = _noise(row, over, metric=metric)
    claimed = claim.get("claimed")
    if factor <= 1 + noise:
        label = "does not hold"
    elif claimed is None or factor >= float(claimed):
        label = "holds"
    else:
        label = "holds partly"
    want = f"; claim: x{float(claimed):.2f}" if claimed is not None else ""
    return Verdict(label, f"{shown}: x{factor:.2f} better (noise ±{noise:.0%}{want})")


def load_claims(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def experiments_cited(claims_file: Path) -> set[str]:
    """The experiments whose rows some claim is judged on."""
    return {
        str(c["experiment"])
        for c in load_claims(claims_file).get("claims", [])
        if "experiment" in c
    }


def markdown(run: Run, claims_file: Path, *, run_link: str, pages: str = "techniques") -> str:
    data = load_claims(claims_file)
    sources = data.get("sources", {})
    claims = list(data.get("claims", []))
    verdicts = [(c, judge(run, c)) for c in claims]
    counts: dict[str, int] = {}
    for _, v in verdicts:
        counts[v.label] = counts.get(v.label, 0) + 1
    out = [
        "# The articles' claims, measured",
        "",
        "Generated by `lab techniques` from [`docs/claims.toml`](claims.toml) and the run "
        f"[`{run.run_id}`]({run_link}) ({d.run_line(run)}). How claims were collected and "
        "how a verdict is computed: [claims-method.md](claims-method.md). Verdicts are about "
        "this machine and this run; each links to its evidence.",
        "",
        "Totals: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ".",
        "",
        "| claim | source | verdict | measured | evidence |",
        "|---|---|---|---|---|",
    ]
    for claim, verdict in verdicts:
        src = sources.get(claim["source"], {})
        evidence = _evidence(claim, pages)
        quote = str(claim["quote"]).replace("|", "\\|")
        out.append(
            f"| [{claim['id']}](#{claim['id']}): “{quote}” | {src.get('short', claim['source'])} "
            f"| **{verdict.label}** | {verdict.measured.replace('|', '/')} | {evidence} |"
        )
    out += ["", "## Details", ""]
    for claim, verdict in verdicts:
        src = sources.get(claim["source"], {})
        out += [
            f"### {claim['id']}",
            "",
            f"> {claim['quote']}",
            "",
            f"Source: {src.get('title', claim['source'])}.",
            "",
            f"Reading: {claim.get('reading', '')}",
            "",
            f"Verdict: **{verdict.label}**: {verdict.measured}. "
            f"Evidence: {_evidence(claim, pages)}.",
        ]
        if claim.get("note"):
            out += ["", str(claim["note"])]
        out.append("")
    return "\n".join(out)


def _evidence(claim: dict[str, Any], pages: str) -> str:
    if "evidence" in claim:
        return f"[`{claim['evidence']}`](../{str(claim['evidence']).split('::')[0]})"
    page = claim.get("experiment_page") or claim.get("experiment")
    return f"[{page}]({pages}/{page}.md)" if page else "-"

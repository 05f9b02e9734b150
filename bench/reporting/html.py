"""``report.html``: one self-contained file (inline CSS and JS, charts as inline SVG, no
network reference of any kind) with a sortable, filterable table of every row, the charts,
the framework picker, the manifest and the method. Opens from disk, offline."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from . import _data as d
from ._data import Row, Run
from .plots import Plot

__all__ = ["markdown_to_html", "render"]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1400px;
padding:0 1.5rem 4rem;color:#222}
h1{font-size:1.6rem}h2{margin-top:2.5rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eee}
th{background:#f6f6f6;position:sticky;top:0;text-align:left}
#rows th{cursor:pointer;user-select:none;white-space:nowrap}
#rows th[aria-sort=ascending]::after{content:" \\25B2"}
#rows th[aria-sort=descending]::after{content:" \\25BC"}
#rows td{white-space:nowrap}.wide{overflow-x:auto}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td,tr.error td,tr.incomplete td{color:#999}tr.failed td.st,tr.error td.st{color:#b00}
.flag{display:inline-block;padding:0 4px;margin-right:3px;border-radius:3px;font-size:11px;
background:#fde0c5}.flag.FAILED,.flag.ERROR{background:#f8c8c8}
.controls{display:flex;gap:1rem;align-items:center;margin:.5rem 0;flex-wrap:wrap}
input[type=search]{width:22rem;padding:4px}
.chart{margin:1rem 0}.chart svg{max-width:100%;height:auto}
pre{background:#f6f6f6;padding:.75rem;overflow:auto;max-height:30rem}
blockquote{border-left:4px solid #e6a23c;margin:1rem 0;padding:.25rem 1rem;background:#fff8ec}
nav a{margin-right:1rem}
"""

JS = """
(function () {
  "use strict";
  var table = document.getElementById("rows");
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  var filter = document.getElementById("filter");
  var scenario = document.getElementById("scenario");
  var count = document.getElementById("count");
  function value(row, i) {
    var cell = row.cells[i];
    var v = cell.getAttribute("data-v");
    if (v === null) { return cell.textContent.trim().toLowerCase(); }
    return v === "" ? null : parseFloat(v);
  }
  function sortBy(i) {
    var th = heads[i];
    var dir = th.getAttribute("aria-sort") === "descending" ? "ascending" : "descending";
    if (th.getAttribute("aria-sort") === null && th.getAttribute("data-type") !== "num") {
      dir = "ascending";
    }
    for (var k = 0; k < heads.length; k++) { heads[k].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, i), y = value(b, i);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }   // empty values last, whichever the direction
      if (y === null) { return -1; }
      return (x < y ? -1 : x > y ? 1 : 0) * sign;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function apply() {
    var terms = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var only = scenario.value;
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var text = r.textContent.toLowerCase();
      var ok = (!only || r.getAttribute("data-scenario") === only) &&
        terms.every(function (t) { return text.indexOf(t) !== -1; });
      r.hidden = !ok;
      if (ok) { shown++; }
    });
    count.textContent = shown + " of " + body.rows.length + " rows";
  }
  Array.prototype.forEach.call(heads, function (th, i) {
    th.addEventListener("click", function () { sortBy(i); });
  });
  filter.addEventListener("input", apply);
  scenario.addEventListener("change", apply);
  apply();
})();
"""

# (header, numeric?, value(row), text(row))
_COLUMNS: list[tuple[str, bool, Any, Any]] = [
    ("scenario", False, None, lambda r: r["scenario"]),
    ("conn", True, lambda r: r["concurrency"], lambda r: str(r["concurrency"])),
    ("target", False, None, lambda r: r["target"]),
    ("role", False, None, lambda r: r["role"]),
    ("framework", False, None, lambda r: r.get("framework") or "-"),
    ("server", False, None, lambda r: r.get("server") or "-"),
    ("rank", True, lambda r: r["rank"], lambda r: "" if r["rank"] is None else str(r["rank"])),
    ("req/s", True, lambda r: r["rps"]["median"], d.rps),
    ("spread %", True, lambda r: _scaled(r["rps"]["spread"], 100), d.spread),
    (
        "p50 ms",
        True,
        lambda r: _scaled(r["latency_us"].get("p50"), 0.001),
        lambda r: d.ms(r, "p50"),
    ),
    (
        "p99 ms",
        True,
        lambda r: _scaled(r["latency_us"].get("p99"), 0.001),
        lambda r: d.ms(r, "p99"),
    ),
    (
        "p99.9 ms",
        True,
        lambda r: _scaled(r["latency_us"].get("p99_9"), 0.001),
        lambda r: d.ms(r, "p99_9"),
    ),
    ("CPU-ms/1k", True, lambda r: _scaled(r.get("cpu_s_per_1k"), 1000), d.cpu_ms_per_1k),
    ("RSS MiB", True, lambda r: _scaled(r.get("peak_rss_bytes"), 2**-20), d.rss_mib),
    (
        "B/resp",
        True,
        lambda r: r.get("bytes_per_response"),
        lambda r: d.num(r.get("bytes_per_response")),
    ),
    ("x server floor", True, lambda r: _ratio(r, "server"), lambda r: d.ratio(r, "server")),
    ("x fw floor", True, lambda r: _ratio(r, "framework"), lambda r: d.ratio(r, "framework")),
    (
        "x fw by round",
        True,
        lambda r: (d.per_round(r, "framework") or {}).get("median"),
        lambda r: d.rounds_text(d.per_round(r, "framework")),
    ),
]


def _scaled(value: Any, factor: float) -> float | None:
    return None if value is None else float(value) * factor


def _ratio(row: Row, role: str) -> float | None:
    ref = (row.get("floors") or {}).get(role)
    return None if not ref or ref.get("rps_ratio") is None else float(ref["rps_ratio"])


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(run: Run) -> str:
    head = "".join(
        f'<th data-type="{"num" if num else "text"}" scope="col">{_e(name)}</th>'
        for name, num, _, _ in _COLUMNS
    )
    head += '<th data-type="text" scope="col">status</th>'
    body = []
    rows = [r for board in run.boards().values() for r in board]
    for row in rows:
        cells = []
        for _, num, value, text in _COLUMNS:
            if num:
                v = value(row)
                cells.append(
                    f'<td class="n" data-v="{"" if v is None else v}">{_e(text(row))}</td>'
                )
            else:
                cells.append(f"<td>{_e(text(row))}</td>")
        flags = "".join(f'<span class="flag {_e(f)}">{_e(f)}</span>' for f in d.flags(row))
        reasons = "; ".join(row.get("reasons") or [])
        cells.append(
            f'<td class="st" title="{_e(reasons)}">{flags or "ok"}'
            + (f" {_e(reasons[:120])}" if row["outcome"] != "ok" and reasons else "")
            + "</td>"
        )
        body.append(
            f'<tr class="{_e(row["outcome"])}" data-scenario="{_e(row["scenario"])}">'
            + "".join(cells)
            + "</tr>"
        )
    options = "".join(f'<option value="{_e(s)}">{_e(s)}</option>' for s in run.scenarios())
    return (
        '<div class="controls"><label>Filter <input type="search" id="filter" '
        'placeholder="e.g. flask json noisy" autocomplete="off"></label>'
        '<label>Scenario <select id="scenario"><option value="">all</option>'
        f'{options}</select></label><span id="count"></span></div>'
        f'<div class="wide"><table id="rows"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _manifest(run: Run) -> str:
    m = run.manifest
    mach = m.get("machine") or {}
    facts = [
        ("run", run.run_id),
        ("created", m.get("created_at")),
        ("command", " ".join(m.get("command") or [])),
        (
            "commit",
            f"{(m.get('git') or {}).get('commit')} dirty={(m.get('git') or {}).get('dirty')}",
        ),
        ("CPU", f"{mach.get('cpu_model')} ({mach.get('cpus_logical')} logical)"),
        ("memory", d.num(mach.get("memory_bytes"), "{:,.1f} GiB", 2**30)),
        ("system", f"{mach.get('system')} {mach.get('kernel')} {mach.get('virtualization') or ''}"),
        ("Python", (m.get("python") or {}).get("version")),
        ("wrk", (m.get("wrk") or {}).get("version")),
        ("services", json.dumps(m.get("services"))),
        ("pinning", json.dumps(m.get("pinning"))),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    full = json.dumps(m, indent=2, sort_keys=True)
    return (
        f"<table>{rows}</table><details><summary>manifest.json (everything)</summary>"
        f"<pre>{_e(full)}</pre></details>"
    )


def _method(run: Run) -> str:
    method = run.method
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v))}</td></tr>" for k, v in method.items()
    )
    prose = [
        "Each cell is one target (a framework x server pair, or a floor: the raw server "
        "callable or the framework's hello world) x scenario x concurrency x repeat, loaded "
        "by wrk (one thread, keep-alive, closed loop) after a warm-up, with the server's "
        "process tree pinned to its own CPU and sampled for CPU time and RSS.",
        "A row is the median over its repeats. <em>Spread</em> = (max - min) / median of "
        f"requests/s; a row above {run.noisy_threshold:.0%} is <em>noisy</em>: still "
        "ranked, flagged. A <em>failed</em> cell had an unexpected status, a socket error, a "
        "failed check or no completed request; it keeps its numbers but is never ranked. "
        "<em>latency-censored</em>: the run was too short for its queue, so the percentiles "
        "are too low (throughput still right). <em>client-saturated</em>: wrk used 90% or "
        "more of its core.",
        "CPU-ms/1k = the server tree's user+system CPU per 1,000 requests. Peak RSS = the "
        "largest sum of RSS over the tree (an upper bound for forked workers). "
        "x floor = this row's requests/s over the floor's on the same scenario and level.",
        "Full method and schema: docs/results-schema.md; how to read it: docs/reading-results.md.",
    ]
    return "".join(f"<p>{p}</p>" for p in prose) + f"<table>{rows}</table>"


def _inline(text: str) -> str:
    text = _e(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)\*(?!\w)", r"<em>\1</em>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def markdown_to_html(md: str, *, shift: int = 0) -> str:
    """The small markdown subset this package writes (headings, paragraphs, lists, pipe
    tables, block quotes, bold, italics, code); images are dropped (the HTML inlines them)."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("!["):
            i += 1
        elif line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")) + shift)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            cells = [
                [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", b.strip())[1:-1]]
                for b in block
            ]
            head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                for row in cells[2:]
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        elif line.startswith(">"):
            quote = []
            while i < len(lines) and lines[i].startswith(">"):
                quote.append(lines[i].lstrip("> "))
                i += 1
            out.append(f"<blockquote>{_inline(' '.join(quote))}</blockquote>")
        else:
            para = []
            while (
                i < len(lines)
                and lines[i].strip()
                and not lines[i].startswith(("#", "|", "- ", ">"))
            ):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def scoped_svg(svg: str, prefix: str) -> str:
    """Prefix every id of an SVG (and every reference to one), so that several of
    matplotlib's SVGs (each with its own ``figure_1``, ``patch_1``...) share one page."""
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)


def render(run: Run, plots: list[Plot], picker_md: str, missing: list[str]) -> str:
    charts = "".join(
        f'<figure class="chart" id="chart-{_e(p.name)}"><figcaption>{_e(p.title)}</figcaption>'
        f"{scoped_svg(p.svg, p.name)}</figure>"
        for p in plots
    )
    charts += "".join(f"<p><em>{_e(m)}</em></p>" for m in missing)
    quick = (
        "<blockquote><strong>Quick mode</strong>: one short repeat per cell; spread is not "
        "assessed and small differences are noise.</blockquote>"
        if run.quick
        else ""
    )
    from .tables import counts_line, instruction_tables, rate_tables

    # what travels between sittings leads: costs at fixed rates, then instruction counts
    steady_md = "\n".join(rate_tables(run) + instruction_tables(run))
    steady = (
        f'<section id="fixed-rate">{markdown_to_html(steady_md)}</section>' if steady_md else ""
    )
    steady_nav = '<a href="#fixed-rate">Fixed rate</a>' if steady else ""
    picker_body = picker_md.split("\n", 1)[1] if picker_md.startswith("# ") else picker_md

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Benchmark report: {_e(run.run_id)}</title>
<style>{CSS}</style></head>
<body>
<h1>Benchmark report: {_e(run.run_id)}</h1>
<p>{_inline(d.run_line(run))}.</p>{quick}
<p>{_e(counts_line(run))}</p>
<nav>{steady_nav}<a href="#results">Results</a><a href="#charts">Charts</a>
<a href="#picker">Which framework?</a><a href="#manifest">Manifest</a>
<a href="#method">Method</a></nav>
{steady}
<h2 id="results">Results</h2>
<p>Click a column to sort; type to filter (all words must match, e.g. <code>json flask</code>,
<code>failed</code>, <code>noisy</code>). Failed and noisy rows are shown, never hidden.</p>
{_table(run)}
<h2 id="charts">Charts</h2>
{charts}
<h2 id="picker">Which framework should I pick?</h2>
{markdown_to_html(picker_body, shift=1)}
<h2 id="manifest">Manifest</h2>
{_manifest(run)}
<h2 id="method">Method</h2>
{_method(run)}
<script>{JS}</script>
</body></html>
"""

"""What ``lab report DIR`` writes into a run folder, from its stored results only:

- ``README.md``: markdown tables per scenario x concurrency (:mod:`.tables`), with plots;
- ``plots/*.png`` and ``plots/*.svg`` (:mod:`.plots`);
- ``picker.md``: "which framework should I pick?" by workload profile (:mod:`.picker`);
- ``report.html``: one self-contained page with all of it (:mod:`.html`);
- ``experiments.md``: the technique experiments, when the run has them (:mod:`.experiments`).

``lab compare OLD NEW`` is :mod:`.compare`.
"""

from __future__ import annotations

from pathlib import Path

from . import experiments, html, picker, plots, tables
from ._data import Run, load, per_round, rounds_text

# per_round / rounds_text: the round-by-round ratio, for other pages (bench.perfdoc)
__all__ = ["Run", "load", "per_round", "rounds_text", "write_report"]


def write_report(run: Run, *, with_plots: bool = True) -> list[Path]:
    """Write every output into the run's folder; return the paths written."""
    out = run.path
    missing: list[str] = []
    drawn: list[plots.Plot] = []
    if with_plots:
        try:
            drawn = plots.write_plots(run, out / "plots")
            missing = plots.missing(run)
        except ImportError as exc:  # matplotlib is an optional dependency of the report
            missing = [f"Plots: not drawn ({exc}; install matplotlib)."]
    else:
        missing = ["Plots: not drawn (asked not to)."]
    by_section: dict[str, list[str]] = {}
    for p in drawn:
        by_section.setdefault(p.section, []).append(f"plots/{p.name}.png")
    readme = tables.markdown(run, plots=by_section)
    if missing:
        readme += "\n" + "\n\n".join(missing) + "\n"
    picker_md = picker.markdown(run)
    written = []
    for name, text in (
        ("README.md", readme),
        ("picker.md", picker_md),
        ("report.html", html.render(run, drawn, picker_md, missing)),
    ):
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    for p in drawn:
        written += [out / "plots" / f"{p.name}.png", out / "plots" / f"{p.name}.svg"]
    if with_plots:
        written += experiments.write_run_section(run)
    return written

"""Progress while a run goes: rich progress bars and a live table on a terminal, one line per
cell otherwise (CI logs, ``nox`` without a TTY)."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .plan import Cell
from .plan import Group as PlanGroup

__all__ = ["PlainUI", "RichUI", "cell_line", "make_console", "make_ui"]

STYLE = {"ok": "green", "failed": "red", "error": "magenta"}


def _num(value: Any, scale: float = 1.0, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(float(value) / scale)


def flags(record: dict[str, Any]) -> str:
    return ",".join(record.get("flags") or ())


def cell_line(record: dict[str, Any]) -> str:
    ld = record.get("load") or {}
    srv = record.get("server") or {}
    lat = ld.get("latency_us") or {}
    text = (
        f"{record['outcome']:<6} {record['cell_id']}: {_num(ld.get('rps'))} req/s, "
        f"p50 {_num(lat.get('p50'), 1000, '{:.2f}')} ms, "
        f"p99 {_num(lat.get('p99'), 1000, '{:.2f}')} ms, "
        f"cpu {_num(srv.get('cpu_s_per_1k'), 1, '{:.3f}')} s/1k, "
        f"rss {_num(srv.get('peak_rss_bytes'), 2**20, '{:.0f}')} MiB"
    )
    if flags(record):
        text += f" [{flags(record)}]"
    if record.get("reasons"):
        text += " - " + "; ".join(record["reasons"])[:300]
    return text


class PlainUI:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.total = 0
        self.finished = 0

    def plan(self, total: int, done: int) -> None:
        self.total, self.finished = total, done
        self.console.print(f"lab bench: {total} cells, {done} already done")

    def group(self, group: PlanGroup, pending: int) -> None:
        self.console.print(
            f"-- {group.target.id} [{group.config}] round {group.round}: {pending} cell(s)"
        )

    def cell(self, cell: Cell, phase: str, seconds: float) -> None:
        return

    def cell_done(self, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.finished += 1
        self.console.print(f"[{self.finished}/{self.total}] {cell_line(record)}", markup=False)

    def note(self, message: str) -> None:
        self.console.print(message, markup=False)

    def __enter__(self) -> PlainUI:
        return self

    def __exit__(self, *exc: object) -> None:
        return


class RichUI(PlainUI):
    """An overall bar, a bar for the cell under way and a table of the latest cells."""

    def __init__(self, console: Console | None = None, rows: int = 14) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.overall = self.progress.add_task("cells", total=1)
        self.current = self.progress.add_task("", total=1, visible=False)
        self.recent: deque[dict[str, Any]] = deque(maxlen=rows)
        self.counts = {"ok": 0, "failed": 0, "error": 0}
        self.live = Live(
            self._render(), console=self.console, refresh_per_second=4, transient=False
        )

    def _table(self) -> Table:
        caption = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        table = Table(title="latest cells", caption=caption, expand=False)
        for name in (
            "target",
            "scenario",
            "c",
            "r",
            "req/s",
            "p50 ms",
            "p99 ms",
            "cpu s/1k",
            "RSS MiB",
            "B/resp",
            "outcome",
        ):
            table.add_column(
                name, justify="left" if name in {"target", "scenario", "outcome"} else "right"
            )
        for rec in self.recent:
            ld = rec.get("load") or {}
            lat = ld.get("latency_us") or {}
            srv = rec.get("server") or {}
            outcome = rec["outcome"] + (f" ({flags(rec)})" if flags(rec) else "")
            table.add_row(
                rec["target"]["id"],
                rec["scenario"]["id"],
                str(rec["concurrency"]),
                str(rec["repeat"]),
                _num(ld.get("rps")),
                _num(lat.get("p50"), 1000, "{:.2f}"),
                _num(lat.get("p99"), 1000, "{:.2f}"),
                _num(srv.get("cpu_s_per_1k"), 1, "{:.3f}"),
                _num(srv.get("peak_rss_bytes"), 2**20, "{:.0f}"),
                _num(ld.get("bytes_per_response")),
                f"[{STYLE[rec['outcome']]}]{outcome}[/]",
            )
        return table

    def _render(self) -> Group:
        return Group(self.progress, self._table())

    def plan(self, total: int, done: int) -> None:
        self.total, self.finished = total, done
        self.progress.update(self.overall, total=max(total, 1), completed=done)

    def group(self, group: PlanGroup, pending: int) -> None:
        self.progress.update(
            self.current,
            description=f"{group.target.id}: starting server",
            total=1,
            completed=0,
            visible=True,
        )

    def cell(self, cell: Cell, phase: str, seconds: float) -> None:
        self.progress.reset(
            self.current,
            total=1,
            completed=0,
            description=f"{cell.id} {phase} ({seconds:g} s)",
            visible=True,
        )

    def cell_done(self, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.finished += 1
        self.counts[record["outcome"]] = self.counts.get(record["outcome"], 0) + 1
        self.recent.append(record)
        self.progress.update(self.overall, completed=self.finished)
        self.progress.update(self.current, completed=1)
        self.live.update(self._render())
        if record["outcome"] != "ok":
            self.live.console.print(cell_line(record), markup=False, style=STYLE[record["outcome"]])

    def note(self, message: str) -> None:
        self.live.console.print(message, markup=False)

    def __enter__(self) -> RichUI:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.update(self.current, visible=False)
        self.live.update(self._render())
        self.live.stop()


def make_console() -> Console:
    """A console for the run: a log (no terminal) gets lines wide enough for the tables."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


def make_ui(console: Console | None = None) -> PlainUI:
    console = console or make_console()
    return RichUI(console) if console.is_terminal else PlainUI(console)

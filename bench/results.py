"""The results directory of one run (schema: docs/results-schema.md).

```
<run dir>/manifest.json                       the machine, software and method
<run dir>/cells/<target>__<scenario>__c<N>__r<R>.json   one per measured cell
<run dir>/summary.json                        medians, spread, ranks; rebuilt after each cell
<run dir>/raw/                                wrk's JSON and text, server logs
```

Every file is written atomically (a temporary file in the same folder, then ``os.replace``),
so a reader or a crash never sees half a file. A run is resumed by pointing ``--out`` at its
folder again: cells whose file says ``ok`` or ``failed`` are kept, ``error`` cells (nothing
was measured) are tried again.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "RunDir", "cell_id", "stored_method", "wall_span", "write_json"]

SCHEMA_VERSION = 1
SCHEMA = {
    "manifest": "lab-bench/manifest",
    "cell": "lab-bench/cell",
    "summary": "lab-bench/summary",
}
DONE_OUTCOMES = frozenset({"ok", "failed"})


def cell_id(
    target: str, scenario: str, concurrency: int, repeat: int, offered: str | None = None
) -> str:
    """``offered``: a fixed-rate cell's rate as declared (``1000``, or ``50%`` of capacity,
    written ``50pct``), after a ``q``."""
    rate = "" if offered is None else "__q" + offered.replace("%", "pct")
    return f"{target}__{scenario}__c{concurrency}{rate}__r{repeat}"


def stored_method(method: dict[str, Any]) -> dict[str, Any]:
    """A run's method as its manifest recorded it, with the fields added since filled in as
    the runs written before them measured: ``instances`` 0 (each server directly),
    ``awake_cpus`` False (idle CPUs left to halt), ``rates`` [] (saturation only)."""
    return {"instances": 0, "awake_cpus": False, "rates": [], **method}


def wall_span(cells: Iterable[dict[str, Any]]) -> float | None:
    """Seconds from the first cell's start to the last cell's end, None with no finished
    cell. For a run built across sessions it includes the time between them."""
    cells = list(cells)
    starts = [c["started_at"] for c in cells if c.get("started_at")]
    ends = [c["finished_at"] for c in cells if c.get("finished_at")]
    if not starts or not ends:
        return None
    first, last = datetime.fromisoformat(min(starts)), datetime.fromisoformat(max(ends))
    return (last - first).total_seconds()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def stamp(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the schema name and version first."""
    return {"schema": SCHEMA[kind], "schema_version": SCHEMA_VERSION, **data}


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.cells = path / "cells"
        self.raw = path / "raw"
        self.manifest = path / "manifest.json"
        self.summary = path / "summary.json"

    @property
    def run_id(self) -> str:
        return self.path.name

    def create(self) -> None:
        self.cells.mkdir(parents=True, exist_ok=True)
        self.raw.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.manifest.exists()

    def read_manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest.read_text())
        return data

    def cell_path(self, cid: str) -> Path:
        return self.cells / f"{cid}.json"

    def write_cell(self, cid: str, record: dict[str, Any]) -> None:
        write_json(self.cell_path(cid), stamp("cell", record))

    def iter_cells(self) -> Iterator[dict[str, Any]]:
        if not self.cells.is_dir():
            return
        for path in sorted(self.cells.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # never half-written (atomic); unreadable means damaged: redo it
            if isinstance(data, dict) and data.get("schema") == SCHEMA["cell"]:
                yield data

    def done_cells(self) -> set[str]:
        """Cells a resumed run keeps: measured, whether ok or failed."""
        return {c["cell_id"] for c in self.iter_cells() if c.get("outcome") in DONE_OUTCOMES}

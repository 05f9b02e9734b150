"""Links into the code by line (``impls/fastapi/app.py#L156``) drift as the code moves, and
the side-by-side reading in docs/frameworks.md is built on them. What a test can check
without knowing what each link means: it lands inside its file, on a line that is neither
blank nor docstring prose. That it lands on the right line stays the writer's job."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab import matrix

ANCHOR = re.compile(r"\]\(((?:\.\./)+(?:impls|common|lab|bench)/[\w/]+\.py)#L(\d+)\)")
DOCS = sorted((matrix.REPO_ROOT / "docs").rglob("*.md"))


def _anchors() -> list[tuple[Path, str, int]]:
    found = []
    for doc in DOCS:
        for m in ANCHOR.finditer(doc.read_text(encoding="utf-8")):
            found.append((doc, m.group(1), int(m.group(2))))
    return found


@pytest.mark.parametrize(
    ("doc", "target", "line"),
    _anchors(),
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
def test_a_line_anchor_lands_on_code(doc: Path, target: str, line: int) -> None:
    path = (doc.parent / target).resolve()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert line <= len(lines), f"{doc.name}: {target}#L{line} is past the end of the file"
    text = lines[line - 1].strip()
    assert text, f"{doc.name}: {target}#L{line} is a blank line"
    assert not text.startswith(("``", '"""')), f"{doc.name}: {target}#L{line} is docstring prose"

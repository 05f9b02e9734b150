"""Where the lab keeps what it can rebuild rather than ship: the user's cache directory.

Seed rows (lab/seed.py) and the fixed-rate generator's binary (bench/loadgen.py) live there,
each under a name that carries a digest of what made it, so a stale file is never used.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "partial"]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pyweb-lab``, by default ``~/.cache/pyweb-lab`` (not created here)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pyweb-lab"


def partial(path: Path) -> Path:
    """A file of this process's to write ``path`` into before renaming it into place:
    concurrent writers (test workers, two runs) never see half a file."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")

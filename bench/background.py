"""A thread beside a ``with`` block: how the harness watches a cell while its load runs (the
server's process tree, a bystander client, the load tool's sockets)."""

from __future__ import annotations

import threading
from typing import Self

__all__ = ["Background"]


class Background:
    """A daemon thread that runs :meth:`run` while a ``with`` block does: started on entry;
    on exit ``stopping`` is set and the thread joined (at most ``join_timeout_s``). ``run``
    waits on ``stopping`` rather than sleeping, so that the block's end ends it at once."""

    def __init__(self, name: str, join_timeout_s: float | None = None) -> None:
        self.stopping = threading.Event()
        self.join_timeout_s = join_timeout_s
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._thread.join(self.join_timeout_s)

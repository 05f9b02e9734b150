"""One module per content coding, each a streaming ``Encoder`` plus a one-shot ``compress``.

The shape follows litestar's ``middleware/compression/``: a backend is a small class behind
a Protocol, so ``common.compression`` picks one by name and nothing else knows the
libraries.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Encoder"]


class Encoder(Protocol):
    """A streaming compressor for one response body."""

    def compress(self, data: bytes) -> bytes:
        """Compress and flush ``data``: all output so far decodes to all input so far."""
        ...

    def finish(self) -> bytes:
        """End the stream (trailer / end-of-frame bytes)."""
        ...

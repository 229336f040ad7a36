"""Write coalescing: while one read is handled, the connections written to flush once, at its end.

A relay that delivers one read's messages to many peers would otherwise make one ``transport.write`` (one
``send`` syscall) per message per peer; with a batch open, each peer's frames go out in one write. The batch
is opened around the handling of every read; a send outside any read (a timer, a task) flushes at once.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Flushable", "WriteBatch"]


class Flushable(Protocol):
    def flush(self) -> None:
        """Write everything queued for this connection."""


class WriteBatch:
    """Collects the connections written to while open; flushes each once when the outermost ``close()`` runs.

    Use ``open()`` / ``close()`` around the handling of a read (they nest), and ``add(conn)`` from a send when
    ``active`` is true. A connection should add itself once per batch (it keeps its own "queued" flag); a flush
    that writes to other connections (a close answered at once, say) adds them to the same batch.
    """

    __slots__ = ("_depth", "_queued", "active")

    def __init__(self) -> None:
        self._depth = 0
        self._queued: list[Flushable] = []
        #: Between the outermost open() and its close(). An attribute, not a property: every send reads it, and a
        #: property call costs ~40 ns more.
        self.active = False

    def open(self) -> None:
        self._depth += 1
        self.active = True

    def add(self, conn: Flushable) -> None:
        self._queued.append(conn)

    def close(self) -> int:
        """End one ``open()``; the outermost flushes the connections written to and returns how many there were."""
        self._depth -= 1
        if self._depth:
            return 0
        self.active = False
        flushed = 0
        queued = self._queued
        while queued:
            self._queued = []
            flushed += len(queued)
            for conn in queued:
                conn.flush()
            queued = self._queued
        return flushed

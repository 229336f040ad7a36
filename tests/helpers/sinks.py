"""A real in-memory PeerSink for domain tests: the transport's role, without a socket (the driver's connection
too: it records held reads and failed steps)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["RecordingSink"]


class RecordingSink:
    """Keeps every text delivered, in order; ``received`` awaits deliveries from a backend that takes time."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        #: Set when the domain closed this connection because its session was resumed on another one.
        self.was_taken_over = False
        #: Set when the domain closed it because the application's backend removed its peer.
        self.was_removed = False
        #: Whether the driver holds reading, and how many steps failed (each would close the connection, 1011).
        self.reading_paused = False
        self.failed_steps = 0
        self._changed: asyncio.Event | None = None

    def deliver(self, text: str) -> None:
        self.texts.append(text)
        if self._changed is not None:
            self._changed.set()

    def taken_over(self) -> None:
        self.was_taken_over = True
        if self._changed is not None:
            self._changed.set()

    def removed(self) -> None:
        self.was_removed = True
        if self._changed is not None:
            self._changed.set()

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def step_failed(self) -> None:
        self.failed_steps += 1

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(t) for t in self.texts]

    def take(self) -> list[dict[str, Any]]:
        """The messages delivered since the last take()."""
        out = self.messages
        self.texts.clear()
        return out

    async def received(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until ``count`` messages are here, then take them (and fail if more than ``count`` came)."""
        async with asyncio.timeout(timeout):
            while len(self.texts) < count:
                await self._change()
        out = self.take()
        assert len(out) == count, out
        return out

    async def until_taken_over(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not self.was_taken_over:
                await self._change()

    async def until_removed(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not self.was_removed:
                await self._change()

    async def _change(self) -> None:
        self._changed = changed = asyncio.Event()
        await changed.wait()

"""A numbered stream between two signaling clients, kept going through drains, outages and resumes: the sender
stays a window ahead of what the receiver got, the receiver keeps what it got, in order, and the welcomes of its
resumes. For tests of "in order, none twice, none lost" across real server processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.models import RelayedMessage, Welcome

__all__ = ["NumberedStream"]


class NumberedStream:
    """``count`` messages (0, 1, ...) from ``sender`` to ``receiver`` (peer ``to``), at most ``window`` ahead; with
    ``pause_at``, the sender stops before that message until ``go_on`` is set."""

    def __init__(
        self,
        sender: SignalingClient,
        receiver: SignalingClient,
        to: str,
        count: int,
        window: int,
        pause_at: int | None = None,
    ) -> None:
        self.sender = sender
        self.receiver = receiver
        self.to = to
        self.count = count
        self.window = window
        #: What the receiver got, in order, and the welcomes its resumes brought.
        self.received: list[int] = []
        self.welcomes: list[Welcome] = []
        #: The sender waits for it before message ``pause_at`` (to send the rest at a moment the test chooses).
        self.pause_at = pause_at
        self.go_on = asyncio.Event()
        self._progress = asyncio.Event()

    async def until_received(self, count: int) -> None:
        while len(self.received) < count:
            self._progress.clear()
            await self._progress.wait()

    async def _read(self) -> None:
        async for msg in self.receiver:
            if isinstance(msg, Welcome):
                self.welcomes.append(msg)
            elif isinstance(msg, RelayedMessage):
                self.received.append(msg.data)
                self._progress.set()
                if msg.data == self.count - 1:
                    return

    async def _send(self) -> None:
        for n in range(self.count):
            if n == self.pause_at:
                await self.go_on.wait()
            await self.until_received(n - self.window)
            await self.sender.send_message(n, to=self.to)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[list[asyncio.Task[None]]]:
        """Both sides run while the block does; the block awaits them (the tasks it yields) to see it through."""
        tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._send())]
        try:
            yield tasks
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

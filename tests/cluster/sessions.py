"""Sessions on in-process cluster nodes, as the server holds them: a session, its sink and its driver."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from signaling.cluster.node import ClusterNode
from signaling.rooms.driver import SessionDriver
from signaling.rooms.session import Session, Step
from tests.helpers.sinks import RecordingSink

__all__ = ["GRACE", "Client"]

GRACE = 30.0


class Client:
    """A session on a node, as the server holds one: its sink (the connection) and its driver."""

    def __init__(self, node: ClusterNode, **options: Any) -> None:
        self.sink = RecordingSink()
        self.session = Session(node.backends, self.sink, resume_grace=GRACE, **options)
        self.steps: list[asyncio.Task[None]] = []
        self.driver = SessionDriver(self.session, self.sink, self._spawn)

    def _spawn(self, step: Step) -> None:
        self.steps.append(asyncio.get_running_loop().create_task(step))

    async def send(self, **message: Any) -> list[dict[str, Any]]:
        """One message, its steps run to their end; what came back."""
        self.driver.feed(json.dumps(message))
        await asyncio.gather(*self.steps)
        return self.sink.take()

    async def join(self, room: str = "r", **fields: Any) -> dict[str, Any]:
        replies = await self.send(type="join", room=room, id=1, **fields)
        assert replies and replies[0]["type"] == "welcome", replies
        return replies[0]

    async def drop(self) -> None:
        self.driver.end(left=False)
        await asyncio.gather(*self.steps)

"""Cluster nodes in the test's process: the Redis room layer of each, on the test's own key prefix."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from signaling.cluster.node import ClusterNode
from signaling.cluster.schema import takeover_delivery

__all__ = ["Nodes", "TestNode"]

_markers = itertools.count(1)


class TestNode(ClusterNode):
    """A node that a test can make wait for what its channel carries, or hold it (the contract's Node)."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, url: str, deployment: Nodes, **options: Any) -> None:
        super().__init__(url, **options)
        self.deployment = deployment

    @contextlib.asynccontextmanager
    async def holding_deliveries(self) -> AsyncIterator[None]:
        held: list[str] = []
        self.on_delivery = held.append
        try:
            yield
        finally:
            self.on_delivery = self.router.on_delivery
            for payload in held:
                self.router.on_delivery(payload)

    @contextlib.asynccontextmanager
    async def not_reading(self) -> AsyncIterator[None]:
        """The subscription left unread (its socket fills, then Redis buffers the rest: the node's backlog) until
        the block ends. The link's reader asks the subscription for each message anew: it waits here first."""
        assert self._link is not None
        pubsub = self._link._pubsub
        reading = asyncio.Event()
        get_message = pubsub.get_message

        async def held(*args: Any, **kwargs: Any) -> Any:
            await reading.wait()
            return await get_message(*args, **kwargs)

        pubsub.get_message = held  # type: ignore[method-assign]
        try:
            yield
        finally:
            del pubsub.get_message
            reading.set()

    async def settle_deliveries(self) -> None:
        """Every node's commands so far have run in Redis, and what they published here has arrived: a marker
        published after them on this node's channel has (Redis keeps the order of one channel)."""
        for node in self.deployment.started:
            if node._link is not None:
                await node._link.call("PING")
        marker = takeover_delivery(f"settle-{next(_markers)}")  # a takeover of no one: harmless
        arrived = asyncio.Event()
        handle = self.on_delivery

        def watch(payload: str) -> None:
            if marker in payload.split("\n"):
                arrived.set()
            handle(payload)

        self.on_delivery = watch
        try:
            assert self._link is not None
            await self._link.call("PUBLISH", self.names.node_channel(self.node), marker)
            await asyncio.wait_for(arrived.wait(), 5.0)
        finally:
            self.on_delivery = handle


class Nodes:
    """Starts nodes of one cluster and stops every one at the end; each records when its link is lost and back."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.started: list[TestNode] = []
        self.lost: dict[ClusterNode, list[str]] = {}
        self.restored: dict[ClusterNode, asyncio.Event] = {}

    async def start(self, *, node_ttl: float = 10.0, grace: float = 30.0, **options: Any) -> TestNode:
        lost: list[str] = []
        restored = asyncio.Event()
        node = TestNode(
            self.url,
            self,
            grace=grace,
            prefix=self.prefix,
            node_ttl=node_ttl,
            on_lost=lost.append,
            on_restored=restored.set,
            **options,
        )
        await node.start()
        self.lost[node] = lost
        self.restored[node] = restored
        self.started.append(node)
        return node

    async def stop(self) -> None:
        for node in self.started:
            await node.stop()
        self.started.clear()

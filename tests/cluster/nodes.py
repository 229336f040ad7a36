"""Cluster nodes in the test's process: the Redis directory and bus of each, on the test's own key prefix."""

from __future__ import annotations

import asyncio
from typing import Any

from signaling.cluster.bus import RedisBus
from signaling.cluster.directory import RedisDirectory
from signaling.cluster.node import ClusterNode

__all__ = ["Nodes"]


class Nodes:
    """Starts nodes of one cluster and stops every one at the end; each records when its link is lost and back."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.started: list[ClusterNode] = []
        self.lost: dict[ClusterNode, list[str]] = {}
        self.restored: dict[ClusterNode, asyncio.Event] = {}

    async def start(self, *, node_ttl: float = 10.0, grace: float = 30.0, **limits: Any) -> ClusterNode:
        kept = {k: limits.pop(k) for k in ("kept_count", "kept_bytes") if k in limits}
        directory = RedisDirectory(grace=grace, **limits)
        bus = RedisBus(**kept)
        lost: list[str] = []
        restored = asyncio.Event()
        node = ClusterNode(
            self.url,
            directory,
            bus,
            prefix=self.prefix,
            node_ttl=node_ttl,
            on_lost=lost.append,
            on_restored=restored.set,
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

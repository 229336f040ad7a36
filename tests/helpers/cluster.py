"""Several `signaling serve` processes forming one cluster on the test's Redis (``redis_settings`` fixture)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.helpers.server_process import ServerProcess, async_running_server

__all__ = ["NODE_TTL", "cluster", "ws"]

#: The heartbeat lifetime of test nodes: a killed node's peers leave within about this.
NODE_TTL = 2.0


def ws(node: ServerProcess) -> str:
    """The signaling URL of a node."""
    return node.url + "/ws"


@contextlib.asynccontextmanager
async def cluster(
    count: int, settings: dict[str, str], *extra: str, **options: Any
) -> AsyncIterator[list[ServerProcess]]:
    """``count`` nodes of one cluster; the block's end stops them (SIGTERM: a drain)."""
    args = ["--redis-url", settings["redis_url"], "--redis-prefix", settings["redis_prefix"]]
    args += ["--node-ttl", str(NODE_TTL), "--log-level", "info", *extra]
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(async_running_server(*args, name=f"node{i + 1}", **options))
            for i in range(count)
        ]
        yield nodes

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from tests.cluster.nodes import Nodes
from tests.helpers.redis import READY, redis_argv
from tests.helpers.server_process import ServerProcess, async_running_process


@pytest.fixture
async def nodes(redis_settings: dict[str, str]) -> AsyncIterator[Nodes]:
    started = Nodes(redis_settings["redis_url"], redis_settings["redis_prefix"])
    yield started
    await started.stop()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """A redis-server of the test's own, for tests that make it refuse writes, or stop it."""
    async with async_running_process(redis_argv(tmp_path), name="redis-own", ready_log=READY) as server:
        yield server


@pytest.fixture
async def admin(own_redis: ServerProcess) -> AsyncIterator[redis.Redis]:
    """A plain client of ``own_redis``, to configure it and look at its keys."""
    client = redis.Redis(port=own_redis.port, decode_responses=True)
    yield client
    await client.aclose()

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.cluster.nodes import Nodes


@pytest.fixture
async def nodes(redis_settings: dict[str, str]) -> AsyncIterator[Nodes]:
    started = Nodes(redis_settings["redis_url"], redis_settings["redis_prefix"])
    yield started
    await started.stop()

"""The Redis room layer against the backend contract (tests/rooms/contract.py), on a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.cluster.node import ClusterNode
from tests.cluster.nodes import Nodes
from tests.rooms.contract import Backend, DeliveryContract, DirectoryContract
from tests.rooms.events_contract import EventsContract


@pytest.fixture
def backend(nodes: Nodes) -> Backend:
    async def make(**limits: Any) -> ClusterNode:
        node = await nodes.start(**limits)
        assert node.up, node.down_reason
        return node

    return make


class TestRedisDirectory(DirectoryContract):
    pass


class TestRedisDelivery(DeliveryContract):
    pass


class TestRedisEvents(EventsContract):
    pass

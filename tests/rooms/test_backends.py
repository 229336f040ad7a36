"""The in-memory room layer against the backend contract (tests/rooms/contract.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from signaling.rooms.backends import in_memory
from signaling.rooms.events import InMemoryOutbox
from tests.rooms.contract import Backend, DeliveryContract, DirectoryContract
from tests.rooms.events_contract import EventsContract


class MemoryNode:
    """The only process: nothing to wait for, no other process to hear from."""

    def __init__(self, *, webhook_queue: int | None = None, **limits: Any) -> None:
        outbox = InMemoryOutbox(webhook_queue) if webhook_queue is not None else None
        self.backends = in_memory(**limits, outbox=outbox)

    async def settle(self) -> None:
        pass

    @contextlib.asynccontextmanager
    async def holding_deliveries(self) -> AsyncIterator[None]:
        yield

    async def settle_deliveries(self) -> None:
        pass


@pytest.fixture
def backend() -> Backend:
    made: list[MemoryNode] = []

    async def make(**limits: Any) -> MemoryNode:
        """One deployment of one process per test: every call gives that process."""
        if not made:
            made.append(MemoryNode(**limits))
        return made[0]

    return make


class TestInMemoryDirectory(DirectoryContract):
    pass


class TestInMemoryDelivery(DeliveryContract):
    pass


class TestInMemoryEvents(EventsContract):
    pass

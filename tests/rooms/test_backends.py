"""The in-memory directory and bus against the backend contract (tests/rooms/contract.py)."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.rooms.bus import LocalBus
from signaling.rooms.directory import InMemoryDirectory
from tests.rooms.contract import Backend, BusContract, DirectoryContract


class MemoryNode:
    def __init__(self, **limits: Any) -> None:
        self.directory = InMemoryDirectory(**limits)
        self.bus = LocalBus()

    async def settle(self) -> None:
        pass


@pytest.fixture
def backend() -> Backend:
    async def make(**limits: Any) -> MemoryNode:
        return MemoryNode(**limits)

    return make


class TestInMemoryDirectory(DirectoryContract):
    pass


class TestLocalBus(BusContract):
    pass

"""A session and its recording sink, as the transport would hold them: the client of the domain tests."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from signaling.rooms.hub import InMemoryHub
from signaling.rooms.session import Session
from tests.helpers.sinks import RecordingSink

__all__ = ["Client", "counter_ids", "dumps", "hub"]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Client:
    """A session and its sink, as the transport would hold them."""

    def __init__(self, hub: InMemoryHub, **kwargs: Any) -> None:
        self.sink = RecordingSink()
        self.session = Session(hub, self.sink, **kwargs)

    def send(self, obj: Any) -> list[dict[str, Any]]:
        """Send one message; return what came back to this client."""
        self.session.handle_text(obj if isinstance(obj, str) else dumps(obj))
        return self.sink.take()

    def join(self, room: str = "r", **fields: Any) -> dict[str, Any]:
        replies = self.send({"type": "join", "room": room, **fields})
        assert len(replies) == 1 and replies[0]["type"] == "welcome", replies
        return replies[0]

    @property
    def peer(self) -> str:
        assert self.session.peer is not None
        return self.session.peer


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count()
    return lambda: f"peer{next(numbers)}"


@pytest.fixture
def hub() -> InMemoryHub:
    return InMemoryHub(peer_ids=counter_ids())

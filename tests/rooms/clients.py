"""The domain under test: in-memory backends, and a session with its recording sink as the transport would hold
them. The in-memory backends never wait, so a join or leave runs to its end inline, as the server runs it."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from signaling.rooms.bus import LocalBus
from signaling.rooms.directory import InMemoryDirectory
from signaling.rooms.session import Session, Step
from tests.helpers.sinks import RecordingSink

__all__ = ["Client", "RoomCounts", "Rooms", "counter_ids", "dumps", "run"]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def run(step: Step | None) -> None:
    """Run a session step to its end now; the in-memory backends must never wait."""
    if step is None:
        return
    with pytest.raises(StopIteration):
        step.send(None)


class RoomCounts(NamedTuple):
    rooms: int
    peers: int


class Rooms:
    """A directory and a bus, as one server process holds them."""

    def __init__(self, **limits: Any) -> None:
        self.directory = InMemoryDirectory(peer_ids=limits.pop("peer_ids", counter_ids()), **limits)
        self.bus = LocalBus()

    def stats(self) -> RoomCounts:
        stats = self.directory.stats()
        return RoomCounts(stats.rooms, stats.peers)

    def peers_in(self, room: str) -> list[Any]:
        return [m.entry for m in self.directory.members(room).values()]


class Client:
    """A session and its sink, as the transport would hold them."""

    def __init__(self, rooms: Rooms, **kwargs: Any) -> None:
        self.sink = RecordingSink()
        self.session = Session(rooms.directory, rooms.bus, self.sink, **kwargs)

    def send(self, obj: Any) -> list[dict[str, Any]]:
        """Send one message; return what came back to this client."""
        run(self.session.handle_text(obj if isinstance(obj, str) else dumps(obj)))
        return self.sink.take()

    def join(self, room: str = "r", **fields: Any) -> dict[str, Any]:
        """Join; returns the welcome. What came after it (a resume's replay) is in ``replayed``."""
        replies = self.send({"type": "join", "room": room, **fields})
        assert replies and replies[0]["type"] == "welcome", replies
        self.replayed = replies[1:]
        assert self.replayed == [] or fields.get("resume") is not None, replies
        return replies[0]

    def close(self, code: int = 1006) -> None:
        run(self.session.close(code))

    @property
    def peer(self) -> str:
        assert self.session.peer is not None
        return self.session.peer


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count()
    return lambda: f"peer{next(numbers)}"


@pytest.fixture
def rooms() -> Rooms:
    return Rooms()

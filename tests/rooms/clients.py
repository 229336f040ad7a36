"""The domain under test: in-memory backends, and a session with its recording sink and its driver as the
transport would hold them. The in-memory backends never wait, so a join or leave runs to its end inline, as the
server runs it."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from signaling.rooms.backends import in_memory
from signaling.rooms.driver import SessionDriver, run_inline
from signaling.rooms.peers import Member
from signaling.rooms.session import Session, Step
from tests.helpers.sinks import RecordingSink

__all__ = ["Client", "RoomCounts", "Rooms", "counter_ids", "dumps", "run"]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def run(step: Step | None) -> None:
    """Run a session step to its end now; the in-memory backends must never wait."""
    if step is not None:
        run_inline(step)


class RoomCounts(NamedTuple):
    rooms: int
    peers: int


class Rooms:
    """The in-memory room layer, as one server process holds it."""

    def __init__(self, **limits: Any) -> None:
        self.backends = in_memory(peer_ids=limits.pop("peer_ids", counter_ids()), **limits)
        self.directory = self.backends.directory

    def stats(self) -> RoomCounts:
        stats = self.directory.stats()
        return RoomCounts(stats.rooms, stats.peers)

    def peers_in(self, room: str) -> list[Member]:
        return list(self.directory.members(room).values())


class Client:
    """A session, its sink and its driver, as the transport would hold them."""

    def __init__(self, rooms: Rooms, **kwargs: Any) -> None:
        self.sink = RecordingSink()
        self.session = Session(rooms.backends, self.sink, **kwargs)
        self.driver = SessionDriver(self.session, self.sink, None)

    def send(self, obj: Any) -> list[dict[str, Any]]:
        """Send one message; return what came back to this client."""
        self.driver.feed(obj if isinstance(obj, str) else dumps(obj))
        return self.sink.take()

    def join(self, room: str = "r", **fields: Any) -> dict[str, Any]:
        """Join; returns the welcome. What came after it (a resume's replay) is in ``replayed``."""
        replies = self.send({"type": "join", "room": room, **fields})
        assert replies and replies[0]["type"] == "welcome", replies
        self.replayed = replies[1:]
        assert self.replayed == [] or fields.get("resume") is not None, replies
        return replies[0]

    def close(self, *, left: bool = False) -> None:
        """The connection ends: ``left``, the client ended its session on purpose; else it dropped."""
        self.driver.end(left=left)

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

"""What the application's backend is told of its rooms (webhooks): the events, their numbers, the outbox.

An event is recorded by the room directory in the same step as the change it tells of (in Redis, in the same
atomic function), so it can be neither lost before it is sent nor told twice: a room's events are numbered
``seq`` 1, 2, 3... from its ``room.started`` to its ``room.finished``, and a ``peer.left`` always follows its
``peer.joined``. A drop that resumes within the grace is no change of membership, so it is no event.

Recorded events wait in an ``Outbox`` until the sender (signaling/app/webhooks.py) has delivered them or given
up: in memory here, bounded; in a cluster a Redis stream (signaling/cluster/outbox.py), from which one node at a
time sends, so each event is sent once for the whole cluster and one whose node died is sent by another.
"""

from __future__ import annotations

import json
import secrets
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Final

from signaling.protocol.encode import peer_entry_json
from signaling.protocol.facts import DEFAULT_WEBHOOK_QUEUE

from .peers import Member

__all__ = [
    "PEER_JOINED",
    "PEER_LEFT",
    "ROOM_FINISHED",
    "ROOM_STARTED",
    "InMemoryOutbox",
    "LeftBecause",
    "Outbox",
    "RoomEvent",
    "RoomNumbers",
]

ROOM_STARTED: Final = "room.started"
PEER_JOINED: Final = "peer.joined"
PEER_LEFT: Final = "peer.left"
ROOM_FINISHED: Final = "room.finished"


class LeftBecause(StrEnum):
    """``peer.left``'s ``data.reason``."""

    #: It sent ``leave``, or its client closed the connection with the end-session code.
    LEFT = "left"
    #: The connection of a session that cannot resume ended otherwise (a drop, a server-side close).
    DROPPED = "dropped"
    #: A resumable session's grace ran out (or its ghost budget was full) before it resumed.
    EXPIRED = "expired"
    #: The application's backend removed it (the server API).
    REMOVED = "removed"
    #: The node its connection was on died, and it did not resume elsewhere.
    NODE_LOST = "node-lost"


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One event as the outbox keeps it. ``id`` is its ``webhook-id``, the same on every try; ``detail`` is the
    joined peer's entry (``peer_entry_json``) for ``peer.joined``, the reason for ``peer.left``; ``key`` is where
    the outbox keeps it (for ``done``)."""

    id: str
    type: str
    room: str
    seq: int
    at_ms: int
    peer: str = ""
    detail: str = ""
    key: str = ""

    def body(self) -> bytes:
        """The POST body, Standard Webhooks' shape: ``{"type", "timestamp", "data"}``; the same bytes every try."""
        data: dict[str, Any] = {"room": self.room, "seq": self.seq}
        if self.type == PEER_JOINED:
            entry = json.loads(self.detail)
            data.update(peer=self.peer, name=entry.get("name"), meta=entry.get("meta"))
        elif self.type == PEER_LEFT:
            data.update(peer=self.peer, reason=self.detail)
        stamp = datetime.fromtimestamp(self.at_ms / 1000, UTC).isoformat(timespec="milliseconds")
        body = {"type": self.type, "timestamp": stamp.replace("+00:00", "Z"), "data": data}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Outbox(ABC):
    """Events recorded and not yet delivered or given up, oldest first.

    One sender takes them in order (``take``), delivers each room's in order, and says when each is over
    (``done``). ``wake`` is called when events may have been added, so the sender need not poll for them.
    """

    waits: ClassVar[bool]
    wake: Callable[[], None] | None = None

    @abstractmethod
    async def take(self, limit: int) -> list[RoomEvent] | None:
        """Up to ``limit`` events after those taken already, oldest first; None when this process must not send
        (another node does): then whatever it took and has not finished it must forget, as the next sender will
        send it again. ``take(0)`` only keeps this process the sender."""

    @abstractmethod
    async def done(self, events: list[RoomEvent]) -> None:
        """These events were delivered or given up: they go."""

    @abstractmethod
    def depth(self) -> int:
        """Events waiting or being sent, as last known (a metric)."""

    @abstractmethod
    def lost(self) -> int:
        """Events not recorded because the outbox was full (a metric)."""


class InMemoryOutbox(Outbox):
    """The outbox of a single process: a bounded queue. Past ``limit`` events waiting or being sent, new ones are
    counted (``lost``) and not kept, rather than memory growing while a receiver is down."""

    waits = False

    def __init__(self, limit: int = DEFAULT_WEBHOOK_QUEUE, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.clock = clock
        self._queue: deque[RoomEvent] = deque()
        self._taken = 0
        self._lost = 0
        self._prefix = "msg_" + secrets.token_hex(6) + "_"
        self._count = 0

    def record(self, type_: str, room: str, seq: int, peer: str = "", detail: str = "") -> None:
        if len(self._queue) + self._taken >= self.limit:
            self._lost += 1
            return
        self._count += 1
        at_ms = int(self.clock() * 1000)
        self._queue.append(RoomEvent(self._prefix + str(self._count), type_, room, seq, at_ms, peer, detail))
        if self.wake is not None:
            self.wake()

    async def take(self, limit: int) -> list[RoomEvent] | None:
        queue = self._queue
        taken = [queue.popleft() for _ in range(min(limit, len(queue)))]
        self._taken += len(taken)
        return taken

    async def done(self, events: list[RoomEvent]) -> None:
        self._taken -= len(events)

    def depth(self) -> int:
        return len(self._queue) + self._taken

    def lost(self) -> int:
        return self._lost


class RoomNumbers:
    """The in-memory directory's side of the events: each room's last ``seq`` (kept whether or not webhooks are
    on: the server API shows it), and the events it records in ``outbox`` when there is one."""

    def __init__(self, outbox: InMemoryOutbox | None = None) -> None:
        self.outbox = outbox
        self._seq: dict[str, int] = {}

    def seq(self, room: str) -> int:
        return self._seq.get(room, 0)

    def _record(self, type_: str, room: str, peer: str = "", detail: str = "") -> None:
        seq = self._seq[room] = self._seq.get(room, 0) + 1
        if self.outbox is not None:
            self.outbox.record(type_, room, seq, peer, detail)

    def joined(self, member: Member, *, new_room: bool) -> None:
        if new_room:
            self._record(ROOM_STARTED, member.room)
        self._record(PEER_JOINED, member.room, member.peer, peer_entry_json(member))

    def left(self, member: Member, reason: LeftBecause, *, last: bool) -> None:
        self._record(PEER_LEFT, member.room, member.peer, reason)
        if last:
            self._record(ROOM_FINISHED, member.room)
            del self._seq[member.room]

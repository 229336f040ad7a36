"""Rooms and relay: who is in which room, and handing server->client texts to their connections.

The hub knows message texts only as opaque ``str`` (it writes ``peer-left`` itself, because a peer may vanish
without a session to speak for it); it knows nothing of sockets or asyncio. Delivery is synchronous: a
``PeerSink`` must take the text at once (queue it, or drop the connection), so order between two peers is the
order of the calls. :class:`InMemoryHub` serves one process; a shared (e.g. Redis-backed) hub can implement
the same :class:`Hub` interface later.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import structlog

from signaling.protocol.encode import peer_left_json
from signaling.protocol.errors import ErrorCode, SignalingError, shorten
from signaling.protocol.models import PeerEntry

__all__ = [
    "DEFAULT_MAX_PEERS_PER_ROOM",
    "DEFAULT_MAX_ROOMS",
    "Hub",
    "HubStats",
    "InMemoryHub",
    "Joined",
    "Logger",
    "PeerSink",
    "new_peer_id",
]

DEFAULT_MAX_PEERS_PER_ROOM: Final = 64
DEFAULT_MAX_ROOMS: Final = 10_000
_PEER_ID_BYTES: Final = 12  # 96 random bits -> 16 URL-safe characters


class PeerSink(Protocol):
    """One peer's connection as the hub sees it."""

    def deliver(self, text: str) -> None:
        """Take one server->client JSON text for this peer without blocking.

        May close its connection (a slow consumer, say) and so re-enter the hub; should not raise.
        """


class Logger(Protocol):
    """The part of a structlog bound logger that the domain uses."""

    def bind(self, **new_values: Any) -> Logger: ...
    def debug(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def info(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def warning(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def error(self, event: str, *args: Any, **kw: Any) -> Any: ...


def new_peer_id() -> str:
    """An unguessable, URL-safe peer id (96 random bits); safe to splice into JSON without escaping."""
    return secrets.token_urlsafe(_PEER_ID_BYTES)


@dataclass(frozen=True, slots=True)
class Joined:
    """What :meth:`Hub.join` hands back: the new peer id and who was already in the room."""

    peer: str
    room: str
    peers: tuple[PeerEntry, ...]


@dataclass(frozen=True, slots=True)
class HubStats:
    """Counts for tests and /metrics."""

    rooms: int
    peers: int


class Hub(ABC):
    """Rooms and relay, behind one interface so the server can move from one process to several."""

    @abstractmethod
    def join(self, sink: PeerSink, room: str, name: str | None = None, meta: Mapping[str, Any] | None = None) -> Joined:
        """Add a new peer to ``room`` (made when absent) and return its id and the peers already there.

        Nobody is notified: the caller sends ``welcome`` first, then ``peer-joined`` with :meth:`broadcast`,
        so the newcomer learns its id before anyone can address it.

        Raises:
            SignalingError: ``room-full`` when the room has reached its peer limit, or when the room is new
                and the hub has reached its room limit.
        """

    @abstractmethod
    def leave(self, peer: str, *, notify: bool = True) -> None:
        """Remove ``peer``, tell the others in its room with ``peer-left``, drop the room if now empty.

        ``notify=False`` skips ``peer-left``, for a peer that left before it was announced with
        ``peer-joined``. Idempotent: an unknown peer is ignored.
        """

    @abstractmethod
    def send(self, sender: str, to: str, text: str) -> None:
        """Deliver ``text`` to ``to``.

        Raises:
            SignalingError: ``unknown-peer`` when ``to`` is not in the sender's room; ``not-joined`` when the
                sender is in no room.
        """

    @abstractmethod
    def broadcast(self, sender: str, text: str) -> None:
        """Deliver the same ``text`` to every other peer in the sender's room.

        Raises:
            SignalingError: ``not-joined`` when the sender is in no room.
        """

    @abstractmethod
    def peers_in(self, room: str) -> tuple[PeerEntry, ...]:
        """The peers of ``room`` in join order; empty when the room does not exist."""

    @abstractmethod
    def stats(self) -> HubStats:
        """Current room and peer counts."""


class _Member:
    """A joined peer; ``members`` is its room's dict, held directly so a relay costs two lookups."""

    __slots__ = ("entry", "members", "room", "sink")

    def __init__(self, entry: PeerEntry, sink: PeerSink, room: str, members: dict[str, _Member]) -> None:
        self.entry = entry
        self.sink = sink
        self.room = room
        self.members = members


class InMemoryHub(Hub):
    """The hub of a single process: dicts, no locks (one event loop owns it).

    Args:
        max_peers_per_room: a join beyond this gets ``room-full``.
        max_rooms: creating a room beyond this gets ``room-full`` too (the contract has no better code; the
            message says it is the server's room limit).
        logger: a structlog-style logger for failed deliveries.
        peer_ids: makes peer ids; tests pass a deterministic one.
    """

    def __init__(
        self,
        *,
        max_peers_per_room: int = DEFAULT_MAX_PEERS_PER_ROOM,
        max_rooms: int = DEFAULT_MAX_ROOMS,
        logger: Logger | None = None,
        peer_ids: Callable[[], str] = new_peer_id,
    ) -> None:
        if max_peers_per_room < 1 or max_rooms < 1:
            raise ValueError("max_peers_per_room and max_rooms must be at least 1")
        self.max_peers_per_room = max_peers_per_room
        self.max_rooms = max_rooms
        self._log: Logger = logger if logger is not None else structlog.get_logger("signaling.hub")
        self._new_id = peer_ids
        self._peers: dict[str, _Member] = {}
        self._rooms: dict[str, dict[str, _Member]] = {}

    def join(self, sink: PeerSink, room: str, name: str | None = None, meta: Mapping[str, Any] | None = None) -> Joined:
        members = self._rooms.get(room)
        if members is None:
            if len(self._rooms) >= self.max_rooms:
                raise SignalingError(
                    ErrorCode.ROOM_FULL,
                    f"the server has reached its limit of {self.max_rooms} rooms, so room {room!r} cannot be "
                    "created; join an existing room or try again later",
                )
        elif len(members) >= self.max_peers_per_room:
            raise SignalingError(
                ErrorCode.ROOM_FULL,
                f"room {room!r} is full ({self.max_peers_per_room} peers); try another room or later",
            )
        peer = self._unused_id()
        already = tuple(m.entry for m in members.values()) if members else ()
        if members is None:
            members = self._rooms[room] = {}
        member = _Member(PeerEntry(peer, name, meta), sink, room, members)
        members[peer] = member
        self._peers[peer] = member
        return Joined(peer, room, already)

    def _unused_id(self) -> str:
        for _ in range(16):
            peer = self._new_id()
            if peer not in self._peers:
                return peer
        raise RuntimeError("the peer id generator keeps returning ids in use")

    def leave(self, peer: str, *, notify: bool = True) -> None:
        member = self._peers.pop(peer, None)
        if member is None:
            return
        members = member.members
        del members[peer]
        if not members:
            del self._rooms[member.room]
            return
        if not notify:
            return
        text = peer_left_json(peer)
        for other in list(members.values()):  # a sink may re-enter and change the room
            self._deliver(other, text)

    def send(self, sender: str, to: str, text: str) -> None:
        try:
            members = self._peers[sender].members
        except KeyError:
            raise SignalingError(ErrorCode.NOT_JOINED, "join a room before sending to a peer") from None
        target = members.get(to)
        if target is None:
            raise SignalingError(
                ErrorCode.UNKNOWN_PEER, f"no peer {shorten(to)!r} in your room; it may have left (watch peer-left)"
            )
        self._deliver(target, text)

    def broadcast(self, sender: str, text: str) -> None:
        try:
            members = self._peers[sender].members
        except KeyError:
            raise SignalingError(ErrorCode.NOT_JOINED, "join a room before sending to it") from None
        for peer, target in list(members.items()):  # a sink may re-enter and change the room
            if peer != sender:
                self._deliver(target, text)

    def _deliver(self, target: _Member, text: str) -> None:
        try:
            target.sink.deliver(text)
        except Exception:  # a broken sink is its own connection's problem; it must not fail the sender's message
            self._log.error("deliver failed", peer=target.entry.peer, room=target.room, exc_info=True)

    def peers_in(self, room: str) -> tuple[PeerEntry, ...]:
        members = self._rooms.get(room)
        return tuple(m.entry for m in members.values()) if members else ()

    def stats(self) -> HubStats:
        return HubStats(rooms=len(self._rooms), peers=len(self._peers))

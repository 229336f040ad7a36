"""Who is in which room, within the limits, and the leases of resumable sessions: the room directory.

``RoomDirectory`` is the interface; ``InMemoryDirectory`` serves one process, and signaling/cluster/ has the
Redis one for several. What needs the shared state (join within the limits, leave, the leases) is a coroutine;
what the relay needs per message (the members of a room) is a plain lookup in the view this
process keeps, so relaying costs no round trip.

A lease is what a resumable session holds while its peer is in the room: connected, or in its grace period
after a drop (then the others see nothing, and messages to it are kept). Resuming claims the lease with its token
(stored as a digest) and rotates the token; when a later step of the resume fails, ``unclaim`` gives the lease
back to the old token, so that the client can try again with the token it has. A lease whose grace runs out ends
its membership, and the member is handed, once, to whoever asks for ``expired`` leases, to tell the others.

A session in its grace period (a ghost) costs memory with no connection open: its kept messages, its place in
its room, maybe the room itself. So ghosts are charged to budgets, the client address that left them and the
node they were left on (``ghost_budgets``); a budget over its limit ends its oldest ghosts at once (``release``
returns them, to tell their rooms). Reconnecting clients resume within seconds, so the oldest ghost is the one
least likely to come back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from signaling.protocol.errors import ErrorCode, SignalingError
from signaling.protocol.facts import (
    DEFAULT_MAX_GHOSTS,
    DEFAULT_MAX_GHOSTS_PER_ADDRESS,
    DEFAULT_MAX_ROOMS,
    DEFAULT_ROOM_MAX_PEERS,
)

from .events import LeftBecause, RoomNumbers
from .peers import LiveMembers, Member, new_peer_id

__all__ = [
    "Departure",
    "DirectoryStats",
    "InMemoryDirectory",
    "PeerTaken",
    "RoomDirectory",
    "RoomSummary",
    "Roster",
    "room_full",
    "server_full",
    "unavailable",
]


def room_full(room: str, limit: int) -> SignalingError:
    return SignalingError(ErrorCode.ROOM_FULL, f"room {room!r} is full ({limit} peers); try another room or later")


def unavailable() -> SignalingError:
    """What a step that needs the shared room state answers when its store cannot be reached (or refused it)."""
    return SignalingError(
        ErrorCode.UNAVAILABLE, "the room service is unavailable (its Redis cannot be reached); try again shortly"
    )


def server_full(room: str, limit: int) -> SignalingError:
    return SignalingError(
        ErrorCode.ROOM_FULL,
        f"the server has reached its limit of {limit} rooms, so room {room!r} cannot be created; "
        "join an existing room or try again later",
    )


class PeerTaken(Exception):
    """A join named a peer id that is a member already: nothing was changed.

    Native peers never meet it (their ids are fresh from ``new_peer_id``); protocols whose clients choose their
    ids (signaling/interop/) answer it with their own "id taken".
    """


@dataclass(frozen=True, slots=True)
class Departure:
    """A member gone from its room, and the members still there: the ones to tell (``peer-left``)."""

    member: Member
    others: list[Member]


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room as the server API lists it: its number of members (ghosts included) and its last event number."""

    room: str
    peers: int
    seq: int


@dataclass(frozen=True, slots=True)
class Roster:
    """A room's members on every node, in join order, and the ``seq`` of its last event: the snapshot a backend
    reconciles its webhook events with (events up to ``seq`` are reflected in ``members``)."""

    members: list[Member]
    seq: int


@dataclass(frozen=True, slots=True)
class DirectoryStats:
    """Counts for /healthz and /metrics: of every node (``rooms``, ``peers``, ``nodes``) and of this one
    (``local_peers``: connected here)."""

    rooms: int
    peers: int
    local_peers: int
    nodes: int = 1


class RoomDirectory(ABC):
    """Rooms, their members and the leases of resumable sessions.

    ``join`` and ``claim`` raise SignalingError ``unavailable`` when the shared state cannot be reached or
    changed: then nothing was changed, or what was done is undone. ``leave``, ``release`` and ``unclaim`` end or
    undo something and never raise: what cannot be done at once is done later, and a departure it causes comes
    out of ``expired`` then.
    """

    #: This process's id: members whose connection is here carry it as ``node``.
    node: str
    #: Whether the coroutines may wait (a round trip): then a session's steps run as tasks rather than inline.
    waits: ClassVar[bool]
    #: Ghosts one client address may leave behind, and this node (``ghost_budgets``).
    max_ghosts_per_address: int = DEFAULT_MAX_GHOSTS_PER_ADDRESS
    max_ghosts: int = DEFAULT_MAX_GHOSTS

    def ghost_budgets(self, owner: str) -> list[tuple[str, int]]:
        """The budgets a ghost left by client address ``owner`` ("" when unknown) is charged to, with their
        limits: its address's, and this node's."""
        budgets = [("n:" + self.node, self.max_ghosts)]
        if owner:
            budgets.insert(0, ("a:" + owner, self.max_ghosts_per_address))
        return budgets

    @abstractmethod
    def new_peer_id(self) -> str:
        """An unguessable peer id not in use."""

    @abstractmethod
    async def join(
        self, member: Member, lease: str | None = None, *, max_peers: int | None = None, listed: bool = True
    ) -> list[Member]:
        """Add ``member`` to its room within the limits; return the members already there, in join order.

        ``lease`` is the token digest of a session that can be claimed (None for a plain one). ``max_peers`` is
        the room's peer limit for this join, when its room is not a native one (a PeerJS key, a y-webrtc
        topic; None: ``max_peers_per_room``).
        ``listed=False`` returns no one: a room of thousands (a PeerJS key) is not read out at every join.

        Raises:
            PeerTaken: ``member.peer`` is a member already (checked before the limits).
            SignalingError: ``room-full`` (the room's peer limit, or the server's room limit for a new room).
        """

    @abstractmethod
    async def leave(
        self, peer: str, lease: str | None = None, reason: LeftBecause = LeftBecause.LEFT
    ) -> Departure | None:
        """Remove ``peer`` (and its lease); None if it was not in a room.

        ``lease`` is the token digest the caller holds: a session since resumed elsewhere (its lease rotated) is
        not removed by the connection it left behind. ``reason`` is the ``peer.left`` event's.
        """

    @abstractmethod
    def members(self, room: str) -> LiveMembers:
        """The members of ``room`` in join order, as this process knows them: a live view (empty when it has
        none: then a later join here does not update it; take it after joining)."""

    @abstractmethod
    async def release(self, peer: str, lease: str, until: float, owner: str = "") -> list[Departure]:
        """``peer``'s connection, from client address ``owner``, is gone: its lease ``lease`` is in its grace
        period until ``until`` (unless the session was resumed meanwhile and holds another lease), a ghost charged
        to ``ghost_budgets(owner)``. Returns the ghosts this ended (the oldest of a budget over its limit), removed
        from their rooms, for the caller to tell the others."""

    @abstractmethod
    async def claim(self, digest: str, new_digest: str, now: float) -> tuple[Member, str] | None:
        """Resume: the member holding the live lease of token ``digest``, now on this node under the new token
        ``new_digest``, with the node its connection was on ("" in its grace period, when it has none); None
        when there is no such lease (an unknown, used-up or expired token)."""

    @abstractmethod
    async def unclaim(self, peer: str, digest: str, previous: str, until: float) -> None:
        """Undo a claim whose resume could not be completed: the lease of ``peer``, still held by ``digest``,
        goes back to the token ``previous`` in a grace period until ``until`` (the client retries with it)."""

    @abstractmethod
    async def expired(self, now: float) -> list[Departure]:
        """Members whose grace ran out by ``now``, removed from their rooms: each is handed to one caller only,
        who tells the others (``peer-left``) and drops what was kept for it."""

    @abstractmethod
    async def rooms(self, after: str, limit: int) -> list[RoomSummary]:
        """The rooms of every node named after ``after`` (in code point order), at most ``limit``: the server
        API's listing, paged by name so each page is bounded.

        Raises:
            SignalingError: ``unavailable`` when the shared state cannot be read.
        """

    @abstractmethod
    async def roster(self, room: str) -> Roster:
        """The members of ``room`` on every node, in join order (ghosts included), none when there is no such
        room, and its last event number. Unlike ``members``, read from the shared state: for the server API, not
        the relay.

        Raises:
            SignalingError: ``unavailable`` when the shared state cannot be read.
        """

    @abstractmethod
    def stats(self) -> DirectoryStats: ...


class InMemoryDirectory(RoomDirectory):
    """The directory of a single process: dicts, no locks (one event loop owns it)."""

    waits = False

    def __init__(
        self,
        *,
        max_peers_per_room: int = DEFAULT_ROOM_MAX_PEERS,
        max_rooms: int = DEFAULT_MAX_ROOMS,
        max_ghosts_per_address: int = DEFAULT_MAX_GHOSTS_PER_ADDRESS,
        max_ghosts: int = DEFAULT_MAX_GHOSTS,
        node: str = "local",
        peer_ids: Callable[[], str] = new_peer_id,
        numbers: RoomNumbers | None = None,
    ) -> None:
        if min(max_peers_per_room, max_rooms, max_ghosts_per_address, max_ghosts) < 1:
            raise ValueError("max_peers_per_room, max_rooms and the ghost limits must be at least 1")
        self.max_peers_per_room = max_peers_per_room
        self.max_rooms = max_rooms
        self.max_ghosts_per_address = max_ghosts_per_address
        self.max_ghosts = max_ghosts
        self.node = node
        self._new_id = peer_ids
        self.numbers = numbers if numbers is not None else RoomNumbers()
        self._rooms: dict[str, dict[str, Member]] = {}
        self._peers: dict[str, Member] = {}
        self._leases: dict[str, str] = {}  # token digest -> peer
        self._lease_of: dict[str, str] = {}  # peer -> token digest
        self._grace: dict[str, float] = {}  # peer -> end of its grace period
        self._ghosts: dict[str, dict[str, None]] = {}  # budget -> its ghosts, oldest first
        self._charged: dict[str, list[str]] = {}  # ghost -> the budgets it is charged to

    def new_peer_id(self) -> str:
        for _ in range(16):
            peer = self._new_id()
            if peer not in self._peers:
                return peer
        raise RuntimeError("the peer id generator keeps returning ids in use")

    async def join(
        self, member: Member, lease: str | None = None, *, max_peers: int | None = None, listed: bool = True
    ) -> list[Member]:
        if member.peer in self._peers:
            raise PeerTaken(member.peer)
        limit = self.max_peers_per_room if max_peers is None else max_peers
        members = self._rooms.get(member.room)
        new_room = members is None
        if members is None:
            if len(self._rooms) >= self.max_rooms:
                raise server_full(member.room, self.max_rooms)
            members = self._rooms[member.room] = {}
        elif len(members) >= limit:
            raise room_full(member.room, limit)
        already = list(members.values()) if listed else []
        members[member.peer] = member
        self._peers[member.peer] = member
        if lease is not None:
            self._leases[lease] = member.peer
            self._lease_of[member.peer] = lease
        self.numbers.joined(member, new_room=new_room)
        return already

    async def leave(
        self, peer: str, lease: str | None = None, reason: LeftBecause = LeftBecause.LEFT
    ) -> Departure | None:
        return self._leave(peer, lease, reason)

    def _leave(self, peer: str, lease: str | None, reason: LeftBecause) -> Departure | None:
        member = self._peers.get(peer)
        if member is None or (lease is not None and self._lease_of.get(peer) != lease):
            return None
        del self._peers[peer]
        members = self._rooms[member.room]
        del members[peer]
        if not members:
            del self._rooms[member.room]
        self.numbers.left(member, reason, last=not members)
        digest = self._lease_of.pop(peer, None)
        if digest is not None:
            del self._leases[digest]
        self._grace.pop(peer, None)
        self._unghost(peer)
        return Departure(member, list(members.values()))

    def _unghost(self, peer: str) -> None:
        for budget in self._charged.pop(peer, ()):
            ghosts = self._ghosts[budget]
            del ghosts[peer]
            if not ghosts:
                del self._ghosts[budget]

    def members(self, room: str) -> LiveMembers:
        return self._rooms.get(room) or {}

    async def release(self, peer: str, lease: str, until: float, owner: str = "") -> list[Departure]:
        if self._lease_of.get(peer) != lease:
            return []
        self._grace[peer] = until
        self._peers[peer].node = ""  # connected nowhere
        budgets = self.ghost_budgets(owner)
        self._charged[peer] = [name for name, _ in budgets]
        ended: list[Departure] = []
        for name, limit in budgets:
            ghosts = self._ghosts.setdefault(name, {})
            ghosts[peer] = None
            while len(ghosts) > limit:
                gone = self._leave(next(iter(ghosts)), None, LeftBecause.EXPIRED)
                assert gone is not None  # a ghost is a member
                ended.append(gone)
        return ended

    async def claim(self, digest: str, new_digest: str, now: float) -> tuple[Member, str] | None:
        peer = self._leases.get(digest)
        member = self._peers.get(peer) if peer is not None else None
        if member is None or self._grace.get(member.peer, now + 1) <= now:
            return None  # unknown, used up, or its grace over (the next sweep ends it)
        del self._leases[digest]
        self._leases[new_digest] = member.peer
        self._lease_of[member.peer] = new_digest
        self._grace.pop(member.peer, None)
        self._unghost(member.peer)
        previous, member.node = member.node, self.node
        return member, previous

    async def unclaim(self, peer: str, digest: str, previous: str, until: float) -> None:
        if self._lease_of.get(peer) != digest:
            return
        del self._leases[digest]
        self._leases[previous] = peer
        self._lease_of[peer] = previous
        self._grace[peer] = until
        self._peers[peer].node = ""

    async def expired(self, now: float) -> list[Departure]:
        due = [peer for peer, until in self._grace.items() if until <= now]
        return [gone for peer in due if (gone := self._leave(peer, None, LeftBecause.EXPIRED)) is not None]

    async def rooms(self, after: str, limit: int) -> list[RoomSummary]:
        names = sorted(name for name in self._rooms if name > after)[:limit]
        return [RoomSummary(name, len(self._rooms[name]), self.numbers.seq(name)) for name in names]

    async def roster(self, room: str) -> Roster:
        return Roster(list(self._rooms.get(room, {}).values()), self.numbers.seq(room))

    def stats(self) -> DirectoryStats:
        connected = len(self._peers) - len(self._grace)
        return DirectoryStats(rooms=len(self._rooms), peers=len(self._peers), local_peers=connected)

"""The room directory of a cluster: the state in Redis (library.lua), and this node's view of its rooms.

Joins, leaves and leases are Redis functions, atomic across nodes: two nodes racing for a room's last place
cannot both get it. The relay needs the members of the sender's room at every message without a round trip, so
the node keeps a view of each room it has members in: a snapshot, then every membership change published
after it (changes reach every node on one channel, numbered, so that one already in the snapshot is skipped).
A change reaches this node before anything its author then sends through Redis, so a peer told of a newcomer
(``peer-joined``) can address it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from signaling.protocol import facts
from signaling.protocol.encode import peer_entry_json
from signaling.protocol.errors import SignalingError
from signaling.rooms.directory import (
    Departure,
    DirectoryStats,
    PeerTaken,
    RoomDirectory,
    RoomSummary,
    Roster,
    room_full,
    server_full,
    unavailable,
)
from signaling.rooms.events import LeftBecause
from signaling.rooms.peers import LiveMembers, Member, new_peer_id

from .link import RedisLink, Unavailable
from .schema import Change, member_from, parse_change

__all__ = ["ClusterStats", "RedisDirectory"]

log = structlog.get_logger("signaling.cluster")

#: Members handed out per sweep (or retire) call at most, dead nodes' and run-out graces': a backlog is worked
#: off over several calls, never in one long atomic one.
SWEEP_LIMIT = 1000


def members_from(room: str, fields: list[Any]) -> list[Member]:
    """Members from library.lua's flat ``j, node, res, ...`` lists."""
    return [member_from(room, fields[i], fields[i + 1], fields[i + 2]) for i in range(0, len(fields), 3)]


def departures_from(replies: list[list[Any]]) -> list[Departure]:
    """Departures from library.lua's ``{room, j, node, res, <others: j, node, res...>}`` lists."""
    return [Departure(member_from(r[0], r[1], r[2], r[3]), members_from(r[0], r[4:])) for r in replies if r is not None]


class RoomView:
    """This node's view of one room: its members in join order, kept current by the published changes.

    ``holds`` counts the local sessions in the room or joining it: the view goes when the last one does.
    """

    __slots__ = ("base", "holds", "local", "members", "pending", "ready")

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        #: The version the snapshot reflects: changes up to it are in it already.
        self.base = 0
        #: Members whose connection is on this node.
        self.local: set[str] = set()
        self.holds = 0
        #: Changes received while the snapshot was on its way (None once it arrived).
        self.pending: list[Change] | None = []
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def load(self, version: int, members: list[Member]) -> None:
        self.base = version
        for member in members:
            self.members[member.peer] = member
        pending, self.pending = self.pending or [], None
        for change in pending:
            self.apply(change)
        self.ready.set_result(None)

    def apply(self, change: Change) -> None:
        """Apply a change published after the snapshot (idempotent: this node applies its own at once)."""
        if change.version <= self.base:
            return
        if change.kind == "join":
            assert change.member is not None
            self.members.setdefault(change.peer, change.member)
        elif change.kind == "leave":
            self.members.pop(change.peer, None)
        else:
            member = self.members.get(change.peer)
            if member is not None:
                member.node = change.node


class ClusterStats:
    """The cluster's counts as of the last heartbeat (they cost a round trip, so they are not read per request)."""

    __slots__ = ("nodes", "peers", "rooms")

    def __init__(self) -> None:
        self.rooms = 0
        self.peers = 0
        self.nodes = 0


class RedisDirectory(RoomDirectory):
    """Rooms shared by every node on one Redis. ``link_up`` gives it a link; without one it is unavailable."""

    waits = True

    def __init__(
        self,
        *,
        max_peers_per_room: int = facts.DEFAULT_ROOM_MAX_PEERS,
        max_rooms: int = facts.DEFAULT_MAX_ROOMS,
        max_ghosts_per_address: int = facts.DEFAULT_MAX_GHOSTS_PER_ADDRESS,
        max_ghosts: int = facts.DEFAULT_MAX_GHOSTS,
        grace: float = 0.0,
        peer_ids: Callable[[], str] = new_peer_id,
    ) -> None:
        self.max_peers_per_room = max_peers_per_room
        self.max_rooms = max_rooms
        self.max_ghosts_per_address = max_ghosts_per_address
        self.max_ghosts = max_ghosts
        self.grace = grace
        self.node = ""
        self.cluster = ClusterStats()
        self._new_id = peer_ids
        self._link: RedisLink | None = None
        self._views: dict[str, RoomView] = {}
        self._where: dict[str, str] = {}  # local member -> its room
        #: Fenced calls that must still happen (``_finish``), kept across a lost link.
        self._unfinished: list[tuple[str, str, tuple[Any, ...]]] = []

    def link_up(self, link: RedisLink) -> None:
        self._link = link
        self.node = link.node

    def link_down(self) -> None:
        """The link is lost: every view is stale (the node closes its clients)."""
        self._link = None
        self._views.clear()
        self._where.clear()

    def _linked(self) -> RedisLink:
        link = self._link
        if link is None or not link.up:
            raise unavailable()
        return link

    # ------------------------------------------------------------------ changes from other nodes

    def on_change(self, payload: str) -> None:
        change = parse_change(payload)
        view = self._views.get(change.room)
        if view is None:
            return
        if view.pending is not None:
            view.pending.append(change)
            return
        view.apply(change)
        if change.kind == "move" and change.node != self.node:
            self._disconnected(change.peer)  # resumed on another node

    # ------------------------------------------------------------------ views

    async def _watch(self, room: str) -> RoomView:
        """The view of ``room``, held for a session about to be in it (``_unhold`` when it is not)."""
        view = self._views.get(room)
        if view is not None:
            view.holds += 1
            try:
                await view.ready
            except Unavailable:
                self._unhold(room, view)
                raise unavailable() from None
            return view
        view = self._views[room] = RoomView()
        view.holds += 1
        try:
            reply = await self._linked().fcall("signaling_snapshot", room)
        except (Unavailable, SignalingError) as exc:
            if self._views.get(room) is view:
                del self._views[room]
            view.ready.set_exception(Unavailable(str(exc)))
            view.ready.exception()  # retrieved: the waiters, if any, get it too
            raise unavailable() from None
        view.load(int(reply[0]), members_from(room, reply[2:]))
        return view

    def _unhold(self, room: str, view: RoomView) -> None:
        view.holds -= 1
        if view.holds <= 0 and self._views.get(room) is view:
            del self._views[room]

    def _connected(self, room: str, view: RoomView, peer: str) -> None:
        if peer in view.local:
            self._unhold(room, view)  # a takeover on this node: the session holds the view once
        view.local.add(peer)
        self._where[peer] = room

    def _disconnected(self, peer: str) -> None:
        """``peer``'s connection is no longer here."""
        room = self._where.pop(peer, None)
        view = self._views.get(room) if room is not None else None
        if view is not None:
            view.local.discard(peer)
            self._unhold(room, view)  # type: ignore[arg-type]

    def _gone(self, room: str, peer: str) -> None:
        """``peer`` is out of ``room``."""
        view = self._views.get(room)
        if view is not None:
            view.members.pop(peer, None)
        self._disconnected(peer)

    async def _fenced(self, function: str, *args: Any) -> list[Any]:
        """A fenced call of library.lua (link.py): changed as asked, or not at all and ``unavailable`` raised."""
        try:
            return await self._linked().fenced(function, *args)
        except Unavailable as exc:
            log.warning("cluster_call_failed", function=function, error=str(exc))
            raise unavailable() from None

    # ------------------------------------------------------------------ RoomDirectory

    def new_peer_id(self) -> str:
        return self._new_id()

    async def join(
        self, member: Member, lease: str | None = None, *, max_peers: int | None = None, listed: bool = True
    ) -> list[Member]:
        limit = self.max_peers_per_room if max_peers is None else max_peers
        view = await self._watch(member.room)
        try:
            reply = await self._fenced(
                "signaling_join",
                member.peer,
                member.room,
                peer_entry_json(member),
                self.node,
                "1" if member.resumable else "0",
                lease or "",
                limit,
                self.max_rooms,
                "1" if listed else "0",
            )
        except SignalingError:
            self._unhold(member.room, view)
            raise
        status = reply[0]
        if status != "ok":
            self._unhold(member.room, view)
            if status == "room-full":
                raise room_full(member.room, limit)
            if status == "server-full":
                raise server_full(member.room, self.max_rooms)
            raise PeerTaken(member.peer)
        member.node = self.node
        view.members.setdefault(member.peer, member)
        self._connected(member.room, view, member.peer)
        return members_from(member.room, reply[1:])

    async def leave(
        self, peer: str, lease: str | None = None, reason: LeftBecause = LeftBecause.LEFT
    ) -> Departure | None:
        reply = await self._finish(peer, "signaling_leave", peer, lease or "", reason.value)
        departures = self._departures(reply)
        return departures[0] if departures else None

    def members(self, room: str) -> LiveMembers:
        view = self._views.get(room)
        return view.members if view is not None else {}

    async def release(self, peer: str, lease: str, until: float, owner: str = "") -> list[Departure]:
        budgets = [x for budget in self.ghost_budgets(owner) for x in budget]
        return self._departures(await self._finish(peer, "signaling_release", peer, lease, until, *budgets))

    async def claim(self, digest: str, new_digest: str, now: float) -> tuple[Member, str] | None:
        reply = await self._fenced("signaling_claim", digest, new_digest, self.node, now)
        if reply[0] != "ok":
            return None
        _, peer, room, j, resumable, previous = reply
        try:
            view = await self._watch(room)
        except SignalingError:
            await self.unclaim(peer, new_digest, digest, now + self.grace)
            raise
        member = view.members.get(peer)
        if member is None:  # the snapshot was taken before the claim's change: never, but cheap to be sure
            member = view.members[peer] = member_from(room, j, self.node, resumable)
        member.node = self.node
        self._connected(room, view, peer)
        return member, previous

    async def unclaim(self, peer: str, digest: str, previous: str, until: float) -> None:
        await self._finish(peer, "signaling_unclaim", peer, digest, previous, until)

    async def _finish(self, peer: str, function: str, *args: Any) -> list[Any]:
        """A step that ends ``peer``'s connection here and must happen even when Redis cannot take it now (a
        session ending, a claim undone): done, or kept and tried again at each sweep until it is (a departure
        it causes then comes out of ``expired``). The reply, or ``["later"]``."""
        try:
            reply = await self._fenced(function, *args)
        except SignalingError:
            self._unfinished.append((peer, function, args))
            reply = ["later"]
        if reply[0] != "none":  # "none": the lease moved on, to a session that may be here now
            self._disconnected(peer)
        return reply

    def _departures(self, reply: list[Any]) -> list[Departure]:
        """The departures a leave or a release replied (``{'ok', <departures>}``), out of this node's views."""
        if reply[0] != "ok":
            return []
        departures = departures_from(reply[1:])
        for departure in departures:
            self._gone(departure.member.room, departure.member.peer)
        return departures

    async def expired(self, now: float) -> list[Departure]:
        departures: list[Departure] = []
        unfinished, self._unfinished = self._unfinished, []
        for peer, function, args in unfinished:
            departures += self._departures(await self._finish(peer, function, *args))
        until = now + self.grace if self.grace > 0 else 0
        try:
            reply = await self._linked().fcall("signaling_sweep", now, until, SWEEP_LIMIT)
        except (Unavailable, SignalingError):
            return departures
        for departure in departures_from(reply):
            self._gone(departure.member.room, departure.member.peer)
            departures.append(departure)
        return departures

    async def retire(self, now: float) -> list[Departure]:
        """This node stops: its members leave, its resumable ones after their grace (they may resume elsewhere).

        Raises:
            Unavailable: Redis cannot be reached (the others' sweep hands out the rest).
        """
        until = now + self.grace if self.grace > 0 else 0
        link = self._link
        if link is None:
            raise Unavailable("not linked")
        departures: list[Departure] = []
        while True:
            remaining, gone = await link.fcall("signaling_retire", self.node, until, SWEEP_LIMIT)
            departures += departures_from(gone)
            if not remaining:
                break
        self._views.clear()
        self._where.clear()
        return departures

    async def rooms(self, after: str, limit: int) -> list[RoomSummary]:
        reply = await self._read("signaling_rooms", after, limit)
        return [RoomSummary(reply[i], int(reply[i + 1]), int(reply[i + 2])) for i in range(0, len(reply), 3)]

    async def roster(self, room: str) -> Roster:
        reply = await self._read("signaling_snapshot", room)
        return Roster(members_from(room, reply[2:]), int(reply[1]))

    async def _read(self, function: str, *args: Any) -> list[Any]:
        """A read-only call of library.lua; ``unavailable`` when Redis cannot answer."""
        try:
            reply: list[Any] = await self._linked().fcall(function, *args)
        except Unavailable as exc:
            log.warning("cluster_call_failed", function=function, error=str(exc))
            raise unavailable() from None
        return reply

    def stats(self) -> DirectoryStats:
        cluster = self.cluster
        return DirectoryStats(
            rooms=cluster.rooms, peers=cluster.peers, local_peers=len(self._where), nodes=cluster.nodes
        )

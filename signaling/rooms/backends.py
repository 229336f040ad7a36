"""What the sessions of one process share: the room directory, the router, the replay store, the deliveries.

In memory for one process (``in_memory``); signaling/cluster/ builds the same four parts on Redis for several.
Whether a session's steps may wait is declared by the parts (``waits``), never guessed from their classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from signaling.protocol import facts
from signaling.protocol.encode import peer_left_json

from .delivery import Deliveries
from .directory import Departure, InMemoryDirectory, RoomDirectory
from .events import InMemoryOutbox, LeftBecause, Outbox, RoomNumbers
from .peers import foreign, new_peer_id
from .replay import InMemoryReplay, ReplayStore
from .routing import LocalRouter, Router

__all__ = ["Backends", "in_memory"]


@dataclass(frozen=True, slots=True)
class Backends:
    """The room layer of one process: ``directory`` (who is where), ``router`` (texts to members), ``replay``
    (what resumable sessions are replayed), the router's ``deliveries`` (this process's connections), and the
    ``outbox`` of the events the directory records for webhooks (None: webhooks are off)."""

    directory: RoomDirectory
    router: Router
    replay: ReplayStore
    outbox: Outbox | None = None

    @property
    def deliveries(self) -> Deliveries:
        return self.router.deliveries

    @property
    def waits(self) -> bool:
        """Whether a step may wait for a round trip: then steps run as tasks, else inline, as a relay does."""
        return self.directory.waits or self.replay.waits

    def announce(self, departures: Iterable[Departure]) -> None:
        """Tell the others in each room that its member left (``peer-left``); not in another protocol's rooms,
        whose clients are told nothing of departures (a PeerJS key holds thousands: none hears of each)."""
        for gone in departures:
            if not foreign(gone.member.room):
                self.router.send_all(gone.others, gone.member.peer, peer_left_json(gone.member.peer))

    def ended(self, departures: list[Departure]) -> None:
        """Sessions the directory ended without their connection (a grace ran out, a ghost budget was full, a
        node died): drop what was kept for them and tell the others (``peer-left``)."""
        for gone in departures:
            self.replay.forget(gone.member.peer)
        self.announce(departures)

    async def remove(self, room: str, peer: str) -> bool:
        """The application's backend removes ``peer`` from ``room`` (the server API): it leaves at once, its
        resume token dies, the others get ``peer-left`` and its connection, on whichever node, closes with 4003.
        False when there is no such peer in that room (or it left meanwhile)."""
        if not any(m.peer == peer for m in (await self.directory.roster(room)).members):
            return False
        gone = await self.directory.leave(peer, reason=LeftBecause.REMOVED)
        if gone is None:
            return False
        self.ended([gone])
        if gone.member.node:  # a ghost in its grace period has no connection to close
            self.router.remove(peer, gone.member.node)
        return True

    async def end_expired(self, now: float) -> int:
        """End the sessions that ended without their connection saying so (a grace ran out; with several nodes,
        a node died): the others get ``peer-left``. Returns how many ended."""
        ended = await self.directory.expired(now)
        self.ended(ended)
        return len(ended)


def in_memory(
    *,
    max_peers_per_room: int = facts.DEFAULT_ROOM_MAX_PEERS,
    max_rooms: int = facts.DEFAULT_MAX_ROOMS,
    max_ghosts_per_address: int = facts.DEFAULT_MAX_GHOSTS_PER_ADDRESS,
    max_ghosts: int = facts.DEFAULT_MAX_GHOSTS,
    kept_count: int = facts.DEFAULT_RESUME_BUFFER,
    kept_bytes: int = facts.DEFAULT_RESUME_BUFFER_BYTES,
    node: str = "local",
    peer_ids: Callable[[], str] = new_peer_id,
    outbox: InMemoryOutbox | None = None,
) -> Backends:
    """The room layer of a single process, with the server's defaults; ``outbox`` keeps its webhook events."""
    replay = InMemoryReplay(kept_count=kept_count, kept_bytes=kept_bytes)
    directory = InMemoryDirectory(
        max_peers_per_room=max_peers_per_room,
        max_rooms=max_rooms,
        max_ghosts_per_address=max_ghosts_per_address,
        max_ghosts=max_ghosts,
        node=node,
        peer_ids=peer_ids,
        numbers=RoomNumbers(outbox),
    )
    return Backends(directory, LocalRouter(Deliveries(), replay), replay, outbox)

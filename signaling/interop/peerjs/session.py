"""One PeerJS connection on the room layer: its id, its relays, and what waits for peers not connected yet.

The connection's id is a member of its key's room (wire.room_of), joined when the WebSocket opens. The join is
the one atomic check of the id: taken by a live member, the id is taken over when the same token holds it (the
token's digest is the member's lease: ``RoomDirectory.claim``, the old connection closed with 4001), else the
client gets ``ID-TAKEN`` and a close, and the holder keeps it, its texts untouched meanwhile (an id held here is
not even tried: the claim alone decides, and the holder's texts are only redirected once it has). The lease
alternates between two digests of the token, so that the connection taken over, whose end may reach the
directory after the takeover, holds the other one and leaves nothing (``leave`` checks the lease).

A message for a peer not in the room waits, as the original's queue does, until that peer connects (checked at
each ``tick``; later messages to it wait behind it, in order) or the expire timeout passes: then the sender gets
one ``EXPIRE``. The original keeps that queue on the server for the absent peer; here it is the sender's (so it
works across nodes with no shared queue), bounded per connection, and gone with the sender.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import structlog

from signaling.protocol.errors import ErrorCode, SignalingError
from signaling.rooms.backends import Backends
from signaling.rooms.directory import PeerTaken
from signaling.rooms.events import LeftBecause
from signaling.rooms.peers import LiveMembers, Logger, Member, PeerSink, token_digest

from . import wire

__all__ = ["MAX_WAITING", "MAX_WAITING_BYTES", "PeerJSConnection", "PeerJSCounters", "PeerJSSession"]

#: Messages (and their bytes) one connection may have waiting for peers not connected yet: a call set up with a
#: peer about to connect is an offer and a few dozen candidates; past this, more are dropped.
MAX_WAITING: Final = 128
MAX_WAITING_BYTES: Final = 256 * 1024

Step = Coroutine[Any, Any, None]


class PeerJSConnection(PeerSink, Protocol):
    """A PeerJS connection as the session sees it: a sink that can also be closed (after an ``ID-TAKEN``)."""

    def close(self) -> None:
        """Close the connection normally (1000), after what was delivered."""


@dataclass(slots=True)
class PeerJSCounters:
    """Counts of every PeerJS session of a process, for /metrics."""

    #: Messages relayed, by type.
    relayed: Counter[str] = field(default_factory=Counter)
    #: Connections opened, by outcome: open, taken-over (the same token), id-taken, refused (limits, errors).
    opened: Counter[str] = field(default_factory=Counter)
    #: Messages sent once their peer came, EXPIRE messages sent for messages that waited in vain, and messages
    #: dropped past a connection's bounds.
    late: int = 0
    expired: int = 0
    dropped: int = 0


@dataclass(slots=True)
class _Waiting:
    """Texts for one absent peer, in order, and when they expire."""

    deadline: float
    texts: list[str]


class PeerJSSession:
    """The PeerJS state of one connection.

    Args:
        backends: the process's room layer.
        sink: this connection.
        key: the PeerJS key (an accepted one), the namespace of ``peer_id``.
        peer_id: the id the client asked for (``wire.valid_id``).
        token: the client's token, which proves the id is its own on a reconnection.
        max_peers: the most peers one key holds.
        expire_timeout: seconds a message waits for its peer before the sender gets ``EXPIRE``.
        waiting: called when this session starts having messages that wait (the caller then ticks it).
        clock: the wall clock (Unix seconds), as the directory's leases take it; ``tick`` takes the same.
    """

    __slots__ = (
        "_backends",
        "_bytes",
        "_clock",
        "_closed",
        "_counters",
        "_expire",
        "_key",
        "_lease",
        "_leases",
        "_log",
        "_max_peers",
        "_member",
        "_members",
        "_moved",
        "_notify",
        "_peer",
        "_sink",
        "_waiting",
        "peer_id",
    )

    def __init__(
        self,
        backends: Backends,
        sink: PeerJSConnection,
        *,
        key: str,
        peer_id: str,
        token: str,
        max_peers: int,
        expire_timeout: float,
        waiting: Callable[[PeerJSSession], None],
        counters: PeerJSCounters | None = None,
        clock: Callable[[], float] = time.time,
        logger: Logger | None = None,
    ) -> None:
        self._backends = backends
        self._sink = sink
        self._key = key
        self.peer_id = peer_id
        self._peer = wire.peer_of(key, peer_id)
        secret = self._peer + "\n" + token + "\n"
        self._leases = (token_digest(secret + "0"), token_digest(secret + "1"))
        self._lease = ""
        self._max_peers = max_peers
        self._expire = expire_timeout
        self._notify = waiting
        self._counters = counters if counters is not None else PeerJSCounters()
        self._clock = clock
        self._log: Logger = (logger or structlog.get_logger("signaling.peerjs")).bind(peerjs=peer_id, key=key)
        self._member: Member | None = None
        self._members: LiveMembers = {}
        self._waiting: dict[str, _Waiting] = {}
        self._bytes = 0
        self._moved = False
        self._closed = False

    @property
    def peer(self) -> str | None:
        """The room layer's id of this connection's peer while it holds it."""
        return self._peer if self._member is not None else None

    @property
    def joined(self) -> bool:
        return self._member is not None

    # ------------------------------------------------------------------ the id

    async def open(self) -> None:
        """Take the id: join the key's room, or take the id over when this token holds it; then ``OPEN``."""
        backends = self._backends
        directory, deliveries = backends.directory, backends.deliveries
        peer = self._peer
        member: Member | None = None
        try:
            if peer not in deliveries.sinks:  # a connection here holds the id (or is opening it): no join
                member = await self._join()
            outcome, previous, displaced = "open", "", None
            if member is None:
                claimed = await self._claim()
                if claimed is None:
                    self._refuse("id-taken", wire.ID_TAKEN_JSON)
                    return
                (member, previous), outcome = claimed, "taken-over"
                # Texts for it wait from now on; the connection that had them closes (4001) without leaving: its
                # lease is no longer the id's.
                displaced = deliveries.expect(peer)
        except SignalingError as exc:
            text = wire.CONNECTION_LIMIT_EXCEED if exc.code is ErrorCode.ROOM_FULL else exc.message
            self._refuse("refused", wire.error_json(text))
            return
        if displaced is not None:
            displaced.taken_over()
        elif previous and previous != directory.node:
            backends.router.take_over(peer, previous)
        self._member = member
        self._members = directory.members(member.room)
        self._counters.opened[outcome] += 1
        self._log.info("peerjs_open", outcome=outcome)
        if not deliveries.attach(peer, self._sink, (wire.OPEN_JSON,)):
            deliveries.detach(peer, self._sink)  # taken over again meanwhile: that one goes on
            self._sink.taken_over()

    async def _join(self) -> Member | None:
        """Join the key's room under the id; None when the id is taken. Texts for it wait from before the join is
        visible to anyone who could send it some."""
        directory, deliveries = self._backends.directory, self._backends.deliveries
        member = Member(self._peer, wire.room_of(self._key), None, None, directory.node, False)
        deliveries.expect(self._peer)
        try:
            await directory.join(member, self._leases[0], max_peers=self._max_peers, listed=False)
        except BaseException as exc:
            deliveries.cancel(self._peer)
            if isinstance(exc, PeerTaken):
                return None
            raise
        self._lease = self._leases[0]
        return member

    async def _claim(self) -> tuple[Member, str] | None:
        """Take the id over when this token's lease holds it (either of the two digests, moved to the other)."""
        directory = self._backends.directory
        for held, lease in (self._leases, self._leases[::-1]):
            claimed = await directory.claim(held, lease, self._clock())
            if claimed is not None:
                self._lease = lease
                return claimed
        return None

    def _refuse(self, outcome: str, text: str) -> None:
        self._counters.opened[outcome] += 1
        self._log.info("peerjs_refused", outcome=outcome)
        self._closed = True
        self._sink.deliver(text)
        self._sink.close()

    # ------------------------------------------------------------------ messages

    def handle_text(self, text: str) -> Step | None:
        """One client text: relayed, left waiting, or ignored; a LEAVE without ``dst`` gives the id up (a step)."""
        member = self._member
        if member is None or self._closed:
            return None
        msg = wire.parse(text, self.peer_id)
        if msg is None or type(msg) is str:  # ignored, or HEARTBEAT (the transport's idle clock saw it)
            return None
        assert isinstance(msg, wire.Relayed)
        if msg.dst is None:
            return self._give_up() if msg.type == "LEAVE" else None
        waiting = self._waiting.get(msg.dst) if self._waiting else None
        if waiting is not None and self._flush(msg.dst, waiting):
            waiting = None  # its peer came: what waited is sent, this goes after it
        if waiting is None:
            target = self._members.get(wire.peer_of(self._key, msg.dst))
            if target is not None:
                self._backends.router.send(target, msg.text)
                self._counters.relayed[msg.type] += 1
                return None
        if msg.type not in wire.NOT_QUEUED:
            self._wait(msg.dst, waiting, msg.text)
        return None

    def _wait(self, dst: str, waiting: _Waiting | None, text: str) -> None:
        """Keep ``text`` for ``dst``, not connected yet (within the connection's bounds)."""
        count = sum(len(w.texts) for w in self._waiting.values())
        if count >= MAX_WAITING or self._bytes + len(text) > MAX_WAITING_BYTES:
            self._counters.dropped += 1
            return
        self._bytes += len(text)
        if waiting is None:
            first = not self._waiting
            self._waiting[dst] = _Waiting(self._clock() + self._expire, [text])
            if first:
                self._notify(self)
        else:
            waiting.texts.append(text)

    def _flush(self, dst: str, waiting: _Waiting) -> bool:
        """Send what waits for ``dst`` if it is connected now; whether it was."""
        target = self._members.get(wire.peer_of(self._key, dst))
        if target is None:
            return False
        del self._waiting[dst]
        send = self._backends.router.send
        for text in waiting.texts:
            self._bytes -= len(text)
            send(target, text)
        self._counters.late += len(waiting.texts)
        return True

    def tick(self, now: float) -> bool:
        """Send what waits to peers connected since, and ``EXPIRE`` for what waited too long; whether any still
        waits (then tick again later)."""
        for dst, waiting in list(self._waiting.items()):
            if self._flush(dst, waiting):
                continue
            if now >= waiting.deadline:
                del self._waiting[dst]
                self._bytes -= sum(len(t) for t in waiting.texts)
                self._counters.expired += 1
                self._sink.deliver(wire.expire_json(dst, self.peer_id))
        return bool(self._waiting)

    # ------------------------------------------------------------------ the end

    async def _give_up(self) -> None:
        """LEAVE without ``dst``: the original frees the id; here the connection goes with it (1000)."""
        self._closed = True
        await self._end(LeftBecause.LEFT)
        self._sink.close()

    async def _end(self, why: LeftBecause) -> None:
        """Give the id up; ``why`` is the ``peer.left`` event's reason."""
        member = self._member
        if member is None or self._moved:
            return
        backends = self._backends
        self._member, self._members = None, {}
        self._waiting.clear()
        self._bytes = 0
        backends.deliveries.detach(member.peer, self._sink)
        # No one is told: PeerJS peers learn of a departure from their own connections, not from the server.
        await backends.directory.leave(member.peer, self._lease, why)
        self._log.info("peerjs_closed")

    async def left(self) -> None:
        """The client closed its connection (PeerJS has no end-session code: any close it started)."""
        self._closed = True
        await self._end(LeftBecause.LEFT)

    async def dropped(self) -> None:
        """The connection ended otherwise (a drop, a close the server started): the id is free at once."""
        self._closed = True
        await self._end(LeftBecause.DROPPED)

    def moved(self) -> None:
        """The id was taken over by another connection (the same token): this one ends without touching it."""
        self._moved = True
        self._member, self._members = None, {}
        self._waiting.clear()
        self._bytes = 0

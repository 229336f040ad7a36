"""One connection's signaling state: parse, check the join rules, relay, resume, and answer mistakes with ``error``.

A :class:`Session` is fed whole text messages and writes server texts to members through the router; it never
touches a socket. Client mistakes never raise out of it: each becomes one ``error`` message and the connection
stays open. Anything else that raises is a bug, for the transport to turn into close code 1011.

Relaying is the hot path and never waits: one ``validate_json`` per message, one serialization per message (a
broadcast hands the same ``str`` to every peer), a lookup in this process's view of the room, and ``send``.
What needs the shared room state (join, resume, leave, the end of a connection) may wait on the directory, so
``handle_text`` hands it back as a coroutine, a step, which driver.py runs before the connection's next message.

The end of a connection comes as the client's intent, never as a close code: ``left`` (it ended the session on
purpose) or ``dropped`` (anything else: a resumable session then outlives it for the grace period).

The order of a join's (and a resume's) steps is what keeps the delivery rules (delivery.py): the buffer for the
newcomer exists before the join is visible to anyone who could address it, the ``welcome`` goes out before what
waited there; and every step after a successful ``claim`` that fails is undone (``unclaim``), so that the client
can resume with the token it still has.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

import structlog

from signaling.protocol.encode import (
    PONG_JSON,
    error_json,
    ice_servers_update_json,
    peer_joined_json,
    peer_left_json,
    relayed_answer_json,
    relayed_candidate_json,
    relayed_message_json,
    relayed_offer_json,
    welcome_json,
)
from signaling.protocol.errors import ErrorCode, SignalingError, shorten
from signaling.protocol.models import (
    RELAYED_MESSAGE_TYPES,
    ClientMessage,
    Join,
    Message,
    NonFiniteNumber,
    RelayedRequest,
)
from signaling.protocol.parse import non_finite_error, parse_client_message

from .backends import Backends
from .events import LeftBecause
from .ice import IceServerList
from .peers import LiveMembers, Logger, Member, PeerSink, new_resume_token, token_digest

__all__ = ["BIG_MESSAGE", "Authorize", "ByteBudget", "Session", "SessionCounters", "Step"]

#: Checks a join before the directory sees it: returns the name the grant imposes (None: the client's own name
#: stands) or raises SignalingError("unauthorized", ...) to refuse.
Authorize = Callable[[Join], str | None]
#: What ``handle_text`` hands back when the message needs the shared state: run it before the next message.
Step = Coroutine[Any, Any, None]
#: Past this size, a message that would go to all of a room is refused before it is parsed when its sender's byte
#: budget could not pay for that (parsing 64 KB costs far more than refusing it; an SDP is a few KB).
BIG_MESSAGE: Final = 16 * 1024


class ByteBudget(Protocol):
    """The client's byte budget (its rate limit), for what a message costs beyond the one copy it was admitted as."""

    def spend(self, size: int) -> bool:
        """Spend ``size`` bytes; False, spending nothing, when the budget has not that many."""

    def affords(self, size: int) -> bool:
        """Whether ``size`` bytes could be spent now (nothing is spent)."""


#: How the not-joined error names each message that needs a room.
_NEEDS_ROOM = {
    "candidate": "a candidate",
    "offer": "an offer",
    "answer": "an answer",
    "message": "a message",
    "leave": "leave",
}


class SessionCounters:
    """Counts shared by every session of a process, read by /metrics; plain ints, cheap on the relay path."""

    __slots__ = ("errors", "relayed", "resumed")

    def __init__(self) -> None:
        #: Client messages relayed to their room, by type: a plain dict of every relayed type (counted per message).
        self.relayed: dict[str, int] = dict.fromkeys(RELAYED_MESSAGE_TYPES, 0)
        #: ``error`` replies sent, by code.
        self.errors: Counter[str] = Counter()
        #: Resume attempts, by outcome (resumed, fresh).
        self.resumed: Counter[str] = Counter()


class Session:
    """The domain state of one client connection.

    Args:
        backends: the room layer of this process (shared by all its sessions, the rooms possibly across
            processes); this connection receives through its deliveries once joined.
        sink: this connection.
        ice_servers: what ``welcome`` (and later ``ice-servers``) hands the client.
        logger: a structlog-style logger, already bound with connection context if the caller has any.
        authorize: called with each ``join`` before the directory (see :data:`Authorize`).
        clock: the wall clock (Unix seconds): TURN credentials and grace periods end at a date every node shares.
        counters: where relayed messages and errors are counted.
        resume_grace: seconds a resumable session outlives a drop; 0 turns resume off.
        address: the client's address: a dropped resumable session is a ghost charged to it (directory.py).
        budget: the client's byte budget, which pays for what a broadcast costs beyond one copy (its size for
            each further recipient), so that a message that becomes N copies costs its sender N times its size.

    Resume tokens are looked up without a throttle: they are 192-bit, so guessing is hopeless, and a lookup costs
    what a join does, which the message rate limits already; a throttle by address would only let bad tokens
    from a shared address (an office NAT) make a victim's valid resume fail.
    """

    __slots__ = (
        "_address",
        "_announced",
        "_authorize",
        "_backends",
        "_base_log",
        "_budget",
        "_clock",
        "_closed",
        "_counters",
        "_grace",
        "_ice_refresh_at",
        "_ice_servers",
        "_lease",
        "_log",
        "_member",
        "_members",
        "_moved",
        "_refused",
        "_router",
        "_sink",
    )

    def __init__(
        self,
        backends: Backends,
        sink: PeerSink,
        *,
        ice_servers: IceServerList | None = None,
        logger: Logger | None = None,
        authorize: Authorize | None = None,
        clock: Callable[[], float] = time.time,
        counters: SessionCounters | None = None,
        resume_grace: float = 0.0,
        address: str = "",
        budget: ByteBudget | None = None,
    ) -> None:
        self._backends = backends
        self._router = backends.router
        self._sink = sink
        self._ice_servers = ice_servers if ice_servers is not None else IceServerList()
        self._ice_refresh_at: float | None = None
        self._base_log: Logger = logger if logger is not None else structlog.get_logger("signaling.session")
        self._log = self._base_log
        self._authorize = authorize
        self._clock = clock
        self._counters = counters if counters is not None else SessionCounters()
        self._grace = resume_grace
        self._address = address
        self._budget = budget
        #: Told when the room layer refused one of this client's messages (the cluster's Redis out of memory).
        self._refused = self._delivery_refused
        self._member: Member | None = None
        self._lease: str | None = None  # the digest of this session's resume token
        self._members: LiveMembers = {}  # this process's view of the room, while joined
        self._moved = False  # resumed on another connection: this one must not end the session
        self._announced = False  # whether the others got peer-joined (and so should get peer-left)
        self._closed = False

    @property
    def peer(self) -> str | None:
        """This client's peer id while joined."""
        return self._member.peer if self._member is not None else None

    @property
    def room(self) -> str | None:
        """The room this client is in while joined."""
        return self._member.room if self._member is not None else None

    @property
    def joined(self) -> bool:
        return self._member is not None

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ messages

    def handle_text(self, text: str) -> Step | None:
        """Handle one client text message; answers go to the sink, client mistakes become ``error``.

        Returns a step for what needs the shared state (join, leave): run it before the next message of this
        connection (driver.py).
        """
        if self._closed:
            return None
        msg = None
        try:
            if len(text) > BIG_MESSAGE:
                self._afford_broadcast(len(text))
            msg = parse_client_message(text)
            if isinstance(msg, dict):  # a relayed message: a plain dict (models.py), the hot path
                self._relay(msg, text)
                return None
            if msg.type == "join":
                return self._answering(msg, self._join(msg))
            if msg.type == "ping":
                self._sink.deliver(PONG_JSON)
                return None
            if self._member is None:
                raise SignalingError(ErrorCode.NOT_JOINED, "join a room before sending leave")
            return self._answering(msg, self._end("leave", LeftBecause.LEFT))
        except SignalingError as exc:
            self._refuse(exc, msg)
        return None

    def _relay(self, msg: RelayedRequest, text: str) -> None:
        member = self._member
        kind = msg["type"]
        if member is None:
            raise SignalingError(ErrorCode.NOT_JOINED, f"join a room before sending {_NEEDS_ROOM[kind]}")
        peer = member.peer
        # Most frequent first: a call setup trickles many candidates.
        if msg["type"] == "candidate":
            self._send(msg["to"], relayed_candidate_json(peer, msg["candidate"]))
        elif msg["type"] == "offer":
            self._send(msg["to"], relayed_offer_json(peer, msg["sdp"]))
        elif msg["type"] == "answer":
            self._send(msg["to"], relayed_answer_json(peer, msg["sdp"]))
        else:
            self._relay_message(peer, msg, text)
        self._counters.relayed[kind] += 1

    def _refuse(self, exc: SignalingError, msg: ClientMessage | None) -> None:
        ref = exc.ref
        if ref is None and msg is not None and exc.code is not ErrorCode.BAD_JSON:
            # Errors raised past parsing (directory, join rules, unknown peer) answer the message's id.
            ref = msg.get("id") if isinstance(msg, dict) else msg.id
        self._counters.errors[exc.code.value] += 1
        self._log.info("client error", code=exc.code.value, detail=exc.message)
        self._sink.deliver(error_json(exc.code, exc.message, ref))

    async def _answering(self, msg: ClientMessage, step: Step) -> None:
        try:
            await step
        except SignalingError as exc:
            self._refuse(exc, msg)

    def _send(self, to: str, text: str) -> None:
        target = self._members.get(to)
        if target is None:
            raise SignalingError(
                ErrorCode.UNKNOWN_PEER, f"no peer {shorten(to)!r} in your room; it may have left (watch peer-left)"
            )
        self._router.send(target, text, self._refused)

    def _broadcast_cost(self, size: int) -> int:
        """What a broadcast of ``size`` bytes costs beyond the one copy the transport admitted: as much again for
        every further recipient (0 without a budget, or with one recipient at most)."""
        others = len(self._members) - 1
        return size * (others - 1) if self._budget is not None and others > 1 else 0

    def _too_costly(self) -> SignalingError:
        others = len(self._members) - 1
        return SignalingError(
            ErrorCode.RATE_LIMITED,
            f"a message to all {others} peers counts {others} times its size against your byte rate; "
            "message dropped (send less, or to one peer)",
        )

    def _afford_broadcast(self, size: int) -> None:
        """Refuse a big message, unparsed, when its sender could not pay for it as a broadcast."""
        cost = self._broadcast_cost(size)
        if cost and self._budget is not None and not self._budget.affords(cost):
            raise self._too_costly()

    def _relay_message(self, peer: str, msg: Message, text: str) -> None:
        to = msg.get("to")
        members = self._members
        if to is None:
            # The transport charged one copy; every further recipient costs the cluster as much again.
            cost = self._broadcast_cost(len(text))
            if cost and self._budget is not None and not self._budget.spend(cost):
                raise self._too_costly()
        try:
            out = relayed_message_json(peer, msg["data"])
        except NonFiniteNumber:
            raise non_finite_error(text, "data", msg.get("id")) from None
        if to is None:
            self._router.send_all(members.values(), peer, out, self._refused)
        else:
            self._send(to, out)

    def _delivery_refused(self) -> None:
        """The room layer could not take one of this client's messages: say so rather than lose it silently."""
        if not self._closed:
            self._refuse(
                SignalingError(
                    ErrorCode.UNAVAILABLE,
                    "a message of yours was not delivered: the room service is out of memory; try again shortly",
                ),
                None,
            )

    # ------------------------------------------------------------------ join and resume

    async def _join(self, msg: Join) -> None:
        if self._member is not None:
            raise SignalingError(
                ErrorCode.ALREADY_JOINED, f"already in room {self._member.room!r}; send leave before joining another"
            )
        name = msg.name
        if self._authorize is not None:
            imposed = self._authorize(msg)
            if imposed is not None:
                name = imposed  # the token's name wins over the one the client sent
        resumed: bool | None = None
        if msg.resume is not None and self._grace > 0:
            if await self._resume(msg):
                self._counters.resumed["resumed"] += 1
                return
            self._counters.resumed["fresh"] += 1
            resumed = False
        resumable = bool(msg.resumable or msg.resume is not None) and self._grace > 0
        backends = self._backends
        directory, deliveries = backends.directory, backends.deliveries
        member = Member(directory.new_peer_id(), msg.room, name, msg.meta, directory.node, resumable)
        token = new_resume_token() if resumable else None
        lease = token_digest(token) if token is not None else None
        # Texts for the newcomer wait from before its join is visible to anyone who could address it.
        deliveries.expect(member.peer)
        if resumable:
            backends.replay.start(member.peer)
        try:
            already = await directory.join(member, lease)
        except BaseException:
            deliveries.cancel(member.peer)
            if resumable:
                backends.replay.forget(member.peer)
            raise
        self._enter(member, lease)
        self._log.info("joined", peers=len(already), resumable=resumable)
        welcome = welcome_json(
            member.peer, member.room, already, self._ice(member.peer), resume=token, resumed=resumed, ref=msg.id
        )
        deliveries.attach(member.peer, self._sink, (welcome,))
        if not self._still(member):  # the sink closed the connection while taking the welcome: never announced
            return
        self._announced = True
        self._router.send_all(already, member.peer, peer_joined_json(member))

    async def _resume(self, msg: Join) -> bool:
        """Resume the session of ``msg.resume`` if it is live, in this room, and can be replayed from
        ``msg.last_seq``. When not, a live session of that token ends first (the others see it leave)."""
        assert msg.resume is not None
        backends = self._backends
        directory, deliveries = backends.directory, backends.deliveries
        token = new_resume_token()
        lease, previous_lease = token_digest(token), token_digest(msg.resume)
        claimed = await directory.claim(previous_lease, lease, self._clock())
        if claimed is None:
            return False
        member, previous_node = claimed
        last_seq = msg.last_seq or 0
        # Texts for it wait from before its replay is read: what the replay lacks, they hold, and once each.
        displaced = deliveries.expect(member.peer, last_seq)
        try:
            replay = await backends.replay.after(member.peer, last_seq) if member.room == msg.room else None
        except BaseException:
            deliveries.cancel(member.peer, displaced)
            # The client keeps its token: the lease goes back to it, for the client to try again.
            await directory.unclaim(member.peer, lease, previous_lease, self._clock() + self._grace)
            raise
        # Now its old connection closes (4001), without leaving: last, since it cannot be undone.
        if displaced is not None:
            displaced.taken_over()
        elif previous_node and previous_node != directory.node:
            self._router.take_over(member.peer, previous_node)
        self._enter(member, lease)
        self._announced = True  # the others know it: if it ends now, they get peer-left
        if replay is None:
            deliveries.cancel(member.peer)
            reason = "resume_gap" if member.room == msg.room else "resume_other_room"
            self._log.info(reason, last_seq=last_seq, room=msg.room)
            await self._end(reason, LeftBecause.DROPPED)
            return False
        others = [m for m in self._members.values() if m.peer != member.peer]
        welcome = welcome_json(
            member.peer, member.room, others, self._ice(member.peer), resume=token, resumed=True, ref=msg.id
        )
        if not deliveries.attach(member.peer, self._sink, (welcome,), replay):
            deliveries.detach(member.peer, self._sink)  # resumed again elsewhere meanwhile: that one goes on
            self._sink.taken_over()
            return True
        self._log.info("resumed", last_seq=last_seq)
        return True

    def _still(self, member: Member) -> bool:
        """Whether this session is still ``member`` (a delivery may close the connection and re-enter)."""
        return self._member is member

    def _enter(self, member: Member, lease: str | None) -> None:
        self._member = member
        self._lease = lease
        self._members = self._backends.directory.members(member.room)
        self._log = self._base_log.bind(peer=member.peer, room=member.room)

    def _ice(self, peer: str) -> str:
        ice = self._ice_servers.for_peer(peer, self._clock())
        self._ice_refresh_at = ice.refresh_at
        return ice.json

    def refresh_ice_servers(self, now: float) -> bool:
        """Send fresh ``ice-servers`` when this peer's TURN credentials are due for renewal; True if it did."""
        due = self._ice_refresh_at
        member = self._member
        if due is None or member is None or now < due or self._closed:
            return False
        ice = self._ice_servers.for_peer(member.peer, now)
        self._ice_refresh_at = ice.refresh_at
        self._sink.deliver(ice_servers_update_json(ice.json))
        self._log.info("ice_servers_refreshed")
        return True

    # ------------------------------------------------------------------ leaving

    async def _end(self, reason: str, why: LeftBecause) -> None:
        """Leave the room now: the others get ``peer-left``, a resumable session's token dies; ``why`` is what
        the ``peer.left`` event says."""
        member = self._member
        if member is None:
            raise SignalingError(ErrorCode.NOT_JOINED, "join a room before sending leave")
        backends = self._backends
        self._member = None
        self._members = {}
        self._ice_refresh_at = None
        backends.deliveries.detach(member.peer, self._sink)
        announced, self._announced = self._announced, False
        lease, self._lease = self._lease, None
        gone = await backends.directory.leave(member.peer, lease, why)
        if gone is not None:
            if member.resumable:
                backends.replay.forget(member.peer)
            if announced:
                self._router.send_all(gone.others, member.peer, peer_left_json(member.peer))
        self._log.info("left", reason=reason)
        self._log = self._base_log

    def moved(self) -> None:
        """The session was resumed on another connection: this one ends without touching it."""
        self._moved = True
        self._member = None
        self._lease = None
        self._members = {}

    async def left(self) -> None:
        """The client ended its session on purpose (it closed the connection with the end-session code): it
        leaves at once, resumable or not. Idempotent with ``dropped``; later texts are ignored."""
        if self._begin_end():
            await self._end("closed", LeftBecause.LEFT)

    async def dropped(self) -> None:
        """The connection is gone otherwise (a drop, a close the server started...): a resumable session stays in
        its room for the grace period, the others see nothing; a plain one leaves."""
        if not self._begin_end():
            return
        member = self._member
        assert member is not None
        if member.resumable and self._lease is not None:
            backends = self._backends
            backends.deliveries.detach(member.peer, self._sink)
            ended = await backends.directory.release(
                member.peer, self._lease, self._clock() + self._grace, self._address
            )
            self._log.info("grace", seconds=self._grace)
            if ended:
                self._log.info("ghosts_ended", peers=[gone.member.peer for gone in ended])
                backends.ended(ended)
            return
        await self._end("closed", LeftBecause.DROPPED)

    def _begin_end(self) -> bool:
        """Mark the session closed; whether it still has a room to end (not closed before, joined, not moved)."""
        if self._closed:
            return False
        self._closed = True
        return self._member is not None and not self._moved

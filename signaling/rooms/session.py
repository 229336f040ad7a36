"""One connection's signaling state: parse, check the join rules, relay, and answer mistakes with ``error``.

A :class:`Session` is fed whole text messages and writes server texts to its :class:`~signaling.hub.PeerSink`;
it never touches a socket. Client mistakes never raise out of :meth:`Session.handle_text`: each becomes one
``error`` message and the connection stays open. Anything else that raises is a bug, for the transport to turn
into close code 1011 (then it calls :meth:`Session.close`).

The relay is the hot path: one ``validate_json`` per message, one serialization per message (a broadcast
hands the same ``str`` to every peer), and no logging at info level, which also keeps SDP and candidates out
of logs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import structlog

from signaling.protocol.encode import (
    PONG_JSON,
    error_json,
    ice_servers_update_json,
    peer_joined_json,
    relayed_answer_json,
    relayed_candidate_json,
    relayed_message_json,
    relayed_offer_json,
    welcome_json,
)
from signaling.protocol.errors import ErrorCode, SignalingError
from signaling.protocol.models import Join, Message, NonFiniteNumber
from signaling.protocol.parse import non_finite_error, parse_client_message

from .hub import Hub, Logger, PeerSink
from .ice import IceServerList

__all__ = ["Authorize", "Session", "SessionCounters"]

#: Checks a join before the hub sees it: returns the name the grant imposes (None: the client's own name stands)
#: or raises SignalingError("unauthorized", ...) to refuse.
Authorize = Callable[[Join], str | None]


class SessionCounters:
    """Counts shared by every session of a process, read by /metrics; plain ints, cheap on the relay path."""

    __slots__ = ("errors", "relayed")

    def __init__(self) -> None:
        #: Client messages relayed to their room, by type (offer, answer, candidate, message).
        self.relayed: Counter[str] = Counter()
        #: ``error`` replies sent, by code.
        self.errors: Counter[str] = Counter()


#: How the not-joined error names each message that needs a room.
_NEEDS_ROOM = {
    "candidate": "a candidate",
    "offer": "an offer",
    "answer": "an answer",
    "message": "a message",
    "leave": "leave",
}


class Session:
    """The domain state of one client connection.

    Args:
        hub: the rooms and relay shared by all sessions.
        sink: this connection; receives every text meant for this client.
        ice_servers: what ``welcome`` (and later ``ice-servers``) hands the client.
        logger: a structlog-style logger, already bound with connection context if the caller has any;
            joins, leaves and client errors are logged at info with ``peer`` and ``room``.
        authorize: called with each ``join`` before the hub (see :data:`Authorize`).
        clock: the wall clock (Unix seconds): TURN credentials expire at a date coturn checks.
        counters: where relayed messages and errors are counted.
    """

    __slots__ = (
        "_announced",
        "_authorize",
        "_base_log",
        "_clock",
        "_closed",
        "_counters",
        "_hub",
        "_ice_refresh_at",
        "_ice_servers",
        "_log",
        "_peer",
        "_room",
        "_sink",
    )

    def __init__(
        self,
        hub: Hub,
        sink: PeerSink,
        *,
        ice_servers: IceServerList | None = None,
        logger: Logger | None = None,
        authorize: Authorize | None = None,
        clock: Callable[[], float] = time.time,
        counters: SessionCounters | None = None,
    ) -> None:
        self._hub = hub
        self._sink = sink
        self._ice_servers = ice_servers if ice_servers is not None else IceServerList()
        self._ice_refresh_at: float | None = None
        self._base_log: Logger = logger if logger is not None else structlog.get_logger("signaling.session")
        self._log = self._base_log
        self._authorize = authorize
        self._clock = clock
        self._counters = counters if counters is not None else SessionCounters()
        self._peer: str | None = None
        self._room: str | None = None
        self._announced = False  # whether the others got peer-joined (and so should get peer-left)
        self._closed = False

    @property
    def peer(self) -> str | None:
        """This client's peer id while joined."""
        return self._peer

    @property
    def room(self) -> str | None:
        """The room this client is in while joined."""
        return self._room

    @property
    def joined(self) -> bool:
        return self._peer is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def handle_text(self, text: str) -> None:
        """Handle one client text message; answers go to the sink, client mistakes become ``error``."""
        if self._closed:
            return
        msg = None
        try:
            msg = parse_client_message(text)
            if msg.type == "join":
                self._join(msg)
                return
            if msg.type == "ping":
                self._sink.deliver(PONG_JSON)
                return
            peer = self._peer
            if peer is None:
                raise SignalingError(ErrorCode.NOT_JOINED, f"join a room before sending {_NEEDS_ROOM[msg.type]}")
            # Most frequent first: a call setup trickles many candidates.
            kind = msg.type
            if msg.type == "candidate":
                self._hub.send(peer, msg.to, relayed_candidate_json(peer, msg.candidate))
            elif msg.type == "offer":
                self._hub.send(peer, msg.to, relayed_offer_json(peer, msg.sdp))
            elif msg.type == "answer":
                self._hub.send(peer, msg.to, relayed_answer_json(peer, msg.sdp))
            elif msg.type == "message":
                self._relay_message(peer, msg, text)
            else:
                self._leave("leave")
                return
            self._counters.relayed[kind] += 1
        except SignalingError as exc:
            ref = exc.ref
            if ref is None and msg is not None and exc.code is not ErrorCode.BAD_JSON:
                ref = msg.id  # errors raised past parsing (hub, join rules) answer the message's id
            self._counters.errors[exc.code.value] += 1
            self._log.info("client error", code=exc.code.value, detail=exc.message)
            self._sink.deliver(error_json(exc.code, exc.message, ref))

    def _relay_message(self, peer: str, msg: Message, text: str) -> None:
        try:
            out = relayed_message_json(peer, msg.data)
        except NonFiniteNumber:
            raise non_finite_error(text, "data", msg.id) from None
        if msg.to is None:
            self._hub.broadcast(peer, out)
        else:
            self._hub.send(peer, msg.to, out)

    def _join(self, msg: Join) -> None:
        if self._peer is not None:
            raise SignalingError(
                ErrorCode.ALREADY_JOINED, f"already in room {self._room!r}; send leave before joining another"
            )
        name = msg.name
        if self._authorize is not None:
            imposed = self._authorize(msg)
            if imposed is not None:
                name = imposed  # the token's name wins over the one the client sent
        joined = self._hub.join(self._sink, msg.room, name, msg.meta)
        peer = joined.peer
        self._peer = peer
        self._room = joined.room
        self._log = self._base_log.bind(peer=peer, room=joined.room)
        self._log.info("joined", peers=len(joined.peers))
        ice = self._ice_servers.for_peer(peer, self._clock())
        self._ice_refresh_at = ice.refresh_at
        self._sink.deliver(welcome_json(peer, joined.room, joined.peers, ice.json, ref=msg.id))
        if self._peer != peer:  # the sink closed the connection while taking the welcome: never announced
            return
        self._announced = True
        self._hub.broadcast(peer, peer_joined_json(peer, name, msg.meta))

    def refresh_ice_servers(self, now: float) -> bool:
        """Send fresh ``ice-servers`` when this peer's TURN credentials are due for renewal; True if it did."""
        due = self._ice_refresh_at
        peer = self._peer
        if due is None or peer is None or now < due or self._closed:
            return False
        ice = self._ice_servers.for_peer(peer, now)
        self._ice_refresh_at = ice.refresh_at
        self._sink.deliver(ice_servers_update_json(ice.json))
        self._log.info("ice_servers_refreshed")
        return True

    def _leave(self, reason: str) -> None:
        peer = self._peer
        assert peer is not None
        self._peer = None
        self._room = None
        self._ice_refresh_at = None
        self._hub.leave(peer, notify=self._announced)
        self._announced = False
        self._log.info("left", reason=reason)
        self._log = self._base_log

    def close(self) -> None:
        """The connection is gone: leave the room if in one. Idempotent; later texts are ignored."""
        if self._closed:
            return
        self._closed = True
        if self._peer is not None:
            self._leave("closed")

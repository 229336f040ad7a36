"""y-webrtc's signaling protocol (Yjs's WebRTC provider) on the room layer: topics are rooms, subscriptions members.

The protocol, as y-webrtc's ``bin/server.js`` serves it and ``src/y-webrtc.js`` uses it: JSON text messages
``{"type":"subscribe","topics":[...]}``, ``unsubscribe`` likewise, ``{"type":"publish","topic":t,...}``, sent
to every subscriber of ``t`` (the sender too when subscribed) with ``clients`` set to their number and every other
field unchanged, and ``ping``, answered ``{"type":"pong"}``. Subscriptions end with the connection. The provider
reads only ``publish`` messages, so anything else the server says (the ``error`` answers below) is ignored by it.

The mapping: topic ``t`` is the room ``y-webrtc.<t>`` (``FOREIGN_MARK``, outside the native room names: the two
never meet, and departures in it are not announced in the native protocol's words; ``|`` and ``%`` are escaped,
``|`` being the cluster's field separator), and each subscription is a member of it with a peer id of its own, whose
sink is the connection. So a publish is ``router.send_all`` to the room's members (one record per node in a
cluster), ``clients`` is the size of the room as the directory sees it (the cluster's), the directory bounds a
topic's subscribers (with a limit of their own) and the number of rooms, and the server API lists and removes
subscribers.

Where the stock server dies or grows without bound, this one answers and goes on: malformed JSON (depth bounded by
the parser), wrong shapes, non-string topics, too many topics per connection, too long a topic, a topic the
connection's room token does not cover; each is one ``error`` message (the protocol's codes), the connection
stays open. Pure: no sockets, no event loop; what waits on the directory is a step (rooms/driver.py runs it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Protocol

import pydantic_core
import structlog

from signaling.protocol.encode import PONG_JSON, error_json
from signaling.protocol.errors import ErrorCode, SignalingError, shorten
from signaling.protocol.models import NonFiniteNumber, dump_json_value
from signaling.rooms.auth import Grant
from signaling.rooms.backends import Backends
from signaling.rooms.peers import FOREIGN_MARK, LiveMembers, Logger, Member, PeerSink
from signaling.rooms.session import ByteBudget

__all__ = [
    "DEFAULT_MAX_SUBSCRIBERS",
    "DEFAULT_MAX_TOPICS",
    "DEFAULT_MAX_TOPIC_LENGTH",
    "ROOM_PREFIX",
    "Budget",
    "TokenCheck",
    "TopicLimits",
    "YWebrtcCounters",
    "YWebrtcSession",
    "room_topic",
    "topic_room",
]

Step = Coroutine[Any, Any, None]
#: The connection's room token, checked when it connected: its grant, or why it has none (None: tokens are off).
TokenCheck = Grant | SignalingError | None

#: Rooms of topics start with this: ``:`` cannot occur in a native room name (ROOM_PATTERN).
ROOM_PREFIX: Final = "y-webrtc" + FOREIGN_MARK
#: Topics one connection may hold: a provider subscribes one per document (room) it has open.
DEFAULT_MAX_TOPICS: Final = 64
#: Characters of a topic: y-webrtc's topic is the application's room name.
DEFAULT_MAX_TOPIC_LENGTH: Final = 256
#: Subscribers of one topic: collaborators on one document at once (a provider connects to 20-35 of them).
DEFAULT_MAX_SUBSCRIBERS: Final = 64


class Budget(ByteBudget, Protocol):
    """The connection's rate limits: bytes (a publish's copies) and messages (a subscribe's further topics)."""

    def spend_messages(self, count: int) -> bool:
        """Spend ``count`` messages more; False, spending nothing, when the budget has not that many."""


def topic_room(topic: str) -> str:
    """The room of ``topic``: prefixed, ``%`` and ``|`` escaped (the cluster splits its records on ``|``)."""
    return ROOM_PREFIX + topic.replace("%", "%25").replace("|", "%7C")


def room_topic(room: str) -> str | None:
    """The topic of a room made by ``topic_room``; None for any other room."""
    if not room.startswith(ROOM_PREFIX):
        return None
    return room[len(ROOM_PREFIX) :].replace("%7C", "|").replace("%25", "%")


@dataclass(frozen=True, slots=True)
class TopicLimits:
    """What one connection may hold, ``max_topics`` subscriptions to topics of ``max_topic_length`` characters, and
    one topic: ``max_subscribers`` (its room's peer limit, instead of the native rooms' one)."""

    max_topics: int = DEFAULT_MAX_TOPICS
    max_topic_length: int = DEFAULT_MAX_TOPIC_LENGTH
    max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS


class YWebrtcCounters:
    """Counts shared by every y-webrtc connection of a process, read by /metrics: plain ints on the hot path."""

    __slots__ = ("deliveries", "errors", "publishes", "subscribers", "topics")

    def __init__(self) -> None:
        #: Publish messages relayed from this node, and the copies they became (their recipients on every node).
        self.publishes = 0
        self.deliveries = 0
        #: Subscriptions on this node now, and the topics they are to (subscribers per topic).
        self.subscribers = 0
        self.topics: Counter[str] = Counter()
        #: ``error`` answers, by code.
        self.errors: Counter[str] = Counter()

    def subscribed(self, topic: str) -> None:
        self.subscribers += 1
        self.topics[topic] += 1

    def unsubscribed(self, topic: str) -> None:
        self.subscribers -= 1
        left = self.topics[topic] - 1
        if left > 0:
            self.topics[topic] = left
        else:
            del self.topics[topic]


def _invalid(text: str) -> SignalingError:
    return SignalingError(ErrorCode.INVALID_MESSAGE, text)


class YWebrtcSession:
    """One y-webrtc connection's subscriptions.

    Args:
        backends: the room layer (shared by every session of the process, native or not).
        sink: the connection; every subscription's texts go to it.
        limits: topics per connection and topic length.
        token: the room token the connection came with, as checked then (``TokenCheck``); when tokens are on
            (not None), each topic subscribed must be covered by a valid one, and publishing needs a subscription.
        clock: the wall clock, for the token's expiry.
        budget: the connection's rate budget: a publish to N subscribers costs N copies of its size, a subscribe
            or unsubscribe of N topics N messages (each is a join or a leave: with Redis, a round trip).
        counters: where this process counts.
        logger: bound with the connection's context.
    """

    __slots__ = (
        "_backends",
        "_budget",
        "_clock",
        "_closed",
        "_counters",
        "_limits",
        "_log",
        "_sink",
        "_subscriptions",
        "_token",
    )

    def __init__(
        self,
        backends: Backends,
        sink: PeerSink,
        *,
        limits: TopicLimits | None = None,
        token: TokenCheck = None,
        clock: Callable[[], float],
        budget: Budget | None = None,
        counters: YWebrtcCounters | None = None,
        logger: Logger | None = None,
    ) -> None:
        self._backends = backends
        self._sink = sink
        self._limits = limits if limits is not None else TopicLimits()
        self._token = token
        self._clock = clock
        self._budget = budget
        self._counters = counters if counters is not None else YWebrtcCounters()
        self._log: Logger = logger if logger is not None else structlog.get_logger("signaling.ywebrtc")
        #: topic -> this connection's member in its room.
        self._subscriptions: dict[str, Member] = {}
        self._closed = False

    @property
    def peer(self) -> str | None:
        """For the driver's log: the member of the first subscription, if any."""
        return next(iter(self._subscriptions.values())).peer if self._subscriptions else None

    @property
    def topics(self) -> list[str]:
        return list(self._subscriptions)

    # ------------------------------------------------------------------ messages

    def handle_text(self, text: str) -> Step | None:
        """One client message; a subscribe or unsubscribe comes back as a step (it waits on the directory)."""
        if self._closed:
            return None
        try:
            try:  # a bounded depth, no NaN (the browser's JSON.parse would choke on it), a ValueError otherwise
                message = pydantic_core.from_json(text, allow_inf_nan=False)
            except ValueError as exc:
                raise SignalingError(ErrorCode.BAD_JSON, f"not JSON: {shorten(str(exc), 120)}") from None
            if not isinstance(message, dict):
                raise _invalid("a message is a JSON object with a type")
            kind = message.get("type")
            if kind == "publish":
                return self._publish(message)
            if kind == "subscribe":
                return self._subscribe(self._topics(message))
            if kind == "unsubscribe":
                return self._unsubscribe(self._topics(message))
            if kind == "ping":
                self._sink.deliver(PONG_JSON)
                return None
            shown = shorten(kind) if isinstance(kind, str) else type(kind).__name__
            raise SignalingError(
                ErrorCode.UNKNOWN_TYPE, f"unknown type {shown!r}: subscribe, unsubscribe, publish or ping"
            )
        except SignalingError as exc:
            self._refuse(exc)
        return None

    def _refuse(self, exc: SignalingError) -> None:
        self._counters.errors[exc.code.value] += 1
        self._log.info("client error", code=exc.code.value, detail=exc.message)
        self._sink.deliver(error_json(exc.code, exc.message))

    def _topics(self, message: dict[str, Any]) -> list[str]:
        """The message's topics (none when absent or null, as the stock server has it); each must be a string of
        1 to ``max_topic_length`` characters, the others are answered and skipped."""
        topics = message.get("topics")
        if topics is None:
            return []
        if not isinstance(topics, list):
            raise _invalid("topics is a list of strings")
        limit = self._limits.max_topic_length
        good = [t for t in topics if isinstance(t, str) and 0 < len(t) <= limit]
        if len(good) < len(topics):
            self._refuse(
                _invalid(f"{len(topics) - len(good)} topic(s) skipped: a topic is a string of 1 to {limit} characters")
            )
        return good

    # ------------------------------------------------------------------ subscriptions

    def _covered(self, topics: list[str]) -> list[str]:
        """The topics the connection's room token lets it subscribe to (all when tokens are off)."""
        token = self._token
        if token is None:
            return topics
        if isinstance(token, SignalingError):
            raise SignalingError(token.code, token.message + " (on the URL: ?token=...)")
        if token.expires_at <= self._clock():
            raise SignalingError(ErrorCode.UNAUTHORIZED, "the room token has expired: connect with a new one")
        covered = [t for t in topics if token.covers(t)]
        if len(covered) < len(topics):
            refused = next(t for t in topics if not token.covers(t))
            self._refuse(
                SignalingError(
                    ErrorCode.UNAUTHORIZED,
                    f"the room token is for {shorten(token.room)!r}, not topic {shorten(refused)!r}"
                    + (f" (nor {len(topics) - len(covered) - 1} more)" if len(topics) - len(covered) > 1 else ""),
                )
            )
        return covered

    def _charge(self, count: int, what: str) -> None:
        """The message rate pays for every topic of a subscribe or unsubscribe beyond the first."""
        budget = self._budget
        if count > 1 and budget is not None and not budget.spend_messages(count - 1):
            raise SignalingError(
                ErrorCode.RATE_LIMITED, f"{what} {count} topics counts as {count} messages against your rate; dropped"
            )

    def _subscribe(self, topics: list[str]) -> Step | None:
        new = [t for t in dict.fromkeys(topics) if t not in self._subscriptions]
        if not new:
            return None
        new = self._covered(new)
        room = self._limits.max_topics - len(self._subscriptions)
        if len(new) > room:
            self._refuse(
                SignalingError(
                    ErrorCode.ROOM_FULL,
                    f"{len(new) - room} topic(s) skipped: a connection holds {self._limits.max_topics} at most",
                )
            )
            new = new[: max(room, 0)]
        if not new:
            return None
        self._charge(len(new), "subscribing to")
        return self._joining(new)

    async def _joining(self, topics: list[str]) -> None:
        backends = self._backends
        directory, deliveries = backends.directory, backends.deliveries
        for topic in topics:
            if self._closed:
                return
            member = Member(directory.new_peer_id(), topic_room(topic), None, None, directory.node, False)
            deliveries.expect(member.peer)  # texts for it wait from before the join is visible
            try:
                await directory.join(member, max_peers=self._limits.max_subscribers)
            except SignalingError as exc:
                deliveries.cancel(member.peer)
                self._refuse(SignalingError(exc.code, f"topic {shorten(topic)!r}: {exc.message}"))
                continue
            except BaseException:
                deliveries.cancel(member.peer)
                raise
            self._subscriptions[topic] = member
            self._counters.subscribed(topic)
            deliveries.attach(member.peer, self._sink)

    def _unsubscribe(self, topics: list[str]) -> Step | None:
        held = [t for t in dict.fromkeys(topics) if t in self._subscriptions]
        if not held:
            return None
        self._charge(len(held), "unsubscribing from")
        return self._leaving([self._subscriptions.pop(t) for t in held])

    async def _leaving(self, members: list[Member]) -> None:
        backends = self._backends
        for member in members:
            backends.deliveries.detach(member.peer, self._sink)
            self._counters.unsubscribed(room_topic(member.room) or member.room)
            await backends.directory.leave(member.peer)

    # ------------------------------------------------------------------ publish

    def _publish(self, message: dict[str, Any]) -> Step | None:
        topic = message.get("topic")
        if not isinstance(topic, str) or not topic:
            raise _invalid("publish needs a topic, a non-empty string")
        subscribed = topic in self._subscriptions
        if self._token is not None and not subscribed:
            raise SignalingError(ErrorCode.UNAUTHORIZED, f"subscribe to {shorten(topic)!r} before publishing to it")
        if len(topic) > self._limits.max_topic_length:
            return None  # nobody can be subscribed to it
        directory = self._backends.directory
        members = directory.members(topic_room(topic))
        if not members and not subscribed and directory.waits:
            # This node has no view of a room none of its connections is in: read its members from the cluster.
            return self._publishing_to_roster(topic, message)
        self._send(message, members)
        return None

    async def _publishing_to_roster(self, topic: str, message: dict[str, Any]) -> None:
        try:
            roster = await self._backends.directory.roster(topic_room(topic))
            self._send(message, {m.peer: m for m in roster.members})
        except SignalingError as exc:
            self._refuse(exc)

    def _send(self, message: dict[str, Any], members: LiveMembers) -> None:
        count = len(members)
        if not count:
            return
        message["clients"] = count
        try:  # 1e400 parses as inf, which the browsers' JSON.parse could not read back: refused as natively
            text = dump_json_value(message)
        except NonFiniteNumber:
            raise _invalid("publish: numbers must fit in a double") from None
        budget = self._budget
        # The transport charged one copy; every further recipient costs as much again (as a native broadcast does).
        if count > 1 and budget is not None and not budget.spend(len(text) * (count - 1)):
            raise SignalingError(
                ErrorCode.RATE_LIMITED,
                f"a publish to {count} subscribers counts {count} times its size against your byte rate; dropped",
            )
        self._backends.router.send_all(members.values(), "", text)
        counters = self._counters
        counters.publishes += 1
        counters.deliveries += count

    # ------------------------------------------------------------------ the end

    async def ended(self) -> None:
        """The connection is gone: every subscription ends (there is no resume in this protocol)."""
        if self._closed:
            return
        self._closed = True
        members = list(self._subscriptions.values())
        self._subscriptions.clear()
        await self._leaving(members)

    def left(self) -> Step:
        return self.ended()

    def dropped(self) -> Step:
        return self.ended()

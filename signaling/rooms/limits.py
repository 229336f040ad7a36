"""Per-connection limits: client messages counted in messages and in bytes, and the time to join a room.

Pure: the caller passes the clock's reading. The rate limit gives back "go on", the ``rate-limited`` reply to
send, or the verdict that the connection is abusive (the caller closes it with 1008); the join deadlines give
back the connections whose time to join is up (the caller closes those that have not joined, 1008).

Why these defaults (docs/protocol.md, "Limits"): a peer joining a full room gathers candidates for every other
peer at once; seven remote peers times dozens of candidates each is several hundred messages within a second,
so the burst holds 500 messages, while the sustained rate (50/s) is far above what signaling needs once calls
are set up. Bytes are limited too, because 500 maximal messages would be 32 MB to fan out to a room.
Abuse is a run of refusals *beyond* the rate: each refusal adds a strike and strikes drain at the message rate,
so a client a little over the limit only loses messages, while a flood (thousands a second) is closed at once.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Generic, TypeVar

import pydantic_core

from signaling.protocol.encode import error_json
from signaling.protocol.errors import ErrorCode, valid_ref
from signaling.token_bucket import TokenBucket

__all__ = ["ABUSE_STRIKES", "REF_SCAN_LIMIT", "JoinDeadline", "JoinDeadlines", "MessageRateLimit"]

T = TypeVar("T")

#: Strikes (refusals beyond the rate) after which a connection is judged abusive.
ABUSE_STRIKES: Final = 100
#: A refused message is parsed only to echo its ``id`` as ``ref``; past this size it is answered without one, so
#: that refusing a flood never costs more than receiving it.
REF_SCAN_LIMIT: Final = 16 * 1024


class MessageRateLimit:
    """One connection's limits: ``rate``/``burst`` messages and ``byte_rate``/``byte_burst`` bytes.

    ``admit(size, now)`` is the fast path, once per message. When it says no, ``refusal(text, now)`` gives the
    ``rate-limited`` error (with the message's ``id`` as ``ref``), or None once the strikes reach
    ``abuse_strikes``: the caller should then close the connection instead of answering forever.
    """

    __slots__ = ("_bytes", "_messages", "_strikes", "_struck_at", "abuse_strikes")

    def __init__(
        self,
        rate: float,
        burst: float,
        byte_rate: float,
        byte_burst: float,
        now: float,
        *,
        abuse_strikes: int = ABUSE_STRIKES,
    ) -> None:
        self._messages = TokenBucket(rate, burst, now)
        self._bytes = TokenBucket(byte_rate, byte_burst, now)
        self.abuse_strikes = abuse_strikes
        self._strikes = 0.0
        self._struck_at = now

    def admit(self, size: int, now: float) -> bool:
        return self._messages.take(1, now) and self._bytes.take(size, now)

    def spend(self, size: int, now: float) -> bool:
        """Spend ``size`` more bytes for an admitted message (the copies a broadcast costs); False, spending
        nothing, when the budget has not that many."""
        return self._bytes.take(size, now)

    def spend_messages(self, count: int, now: float) -> bool:
        """Spend ``count`` more messages for an admitted one that does the work of several (a y-webrtc subscribe
        to many topics); False, spending nothing, when the budget has not that many."""
        return self._messages.take(count, now)

    def affords(self, size: int, now: float) -> bool:
        """Whether ``size`` more bytes could be spent now; nothing is spent."""
        return self._bytes.available(now) >= size

    @property
    def strikes(self) -> float:
        return self._strikes

    def refusal(self, text: str, now: float) -> str | None:
        rate = self._messages.rate
        self._strikes = max(0.0, self._strikes - (now - self._struck_at) * rate) + 1.0
        self._struck_at = now
        if self._strikes >= self.abuse_strikes:
            return None
        ref = None
        if len(text) <= REF_SCAN_LIMIT:
            try:  # pydantic_core, not json: a bounded depth, and a ValueError for anything it cannot read
                value = pydantic_core.from_json(text)
            except ValueError:
                value = None
            if isinstance(value, dict):
                ref = valid_ref(value.get("id"))
        messages, data = self._messages, self._bytes
        return error_json(
            ErrorCode.RATE_LIMITED,
            f"over {messages.rate:g} messages/s (burst {messages.burst:g}) or {data.rate:g} bytes/s "
            f"(burst {data.burst:g}); message dropped",
            ref,
        )


class JoinDeadline(Generic[T]):
    """One connection's time to join; ``connection`` is None once it is gone (its deadline is then moot)."""

    __slots__ = ("at", "connection")

    def __init__(self, at: float, connection: T) -> None:
        self.at = at
        self.connection: T | None = connection

    def cancel(self) -> None:
        """The connection is gone: let go of it now, not when its deadline comes."""
        self.connection = None


class JoinDeadlines(Generic[T]):
    """Connections that must join a room within ``timeout`` seconds of opening: a socket that never joins holds a
    slot. They come in order, so their deadlines are in order too: one queue, and a periodic ``due`` that looks
    at its head only (no timer per connection). A connection that goes cancels its deadline, so that the queue
    holds no connection that left, however fast connections come and go."""

    __slots__ = ("_queue", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._queue: deque[JoinDeadline[T]] = deque()

    def add(self, connection: T, now: float) -> JoinDeadline[T]:
        """``connection`` opened at ``now``; cancel what this returns when it goes."""
        deadline = JoinDeadline(now + self.timeout, connection)
        self._queue.append(deadline)
        return deadline

    def due(self, now: float) -> list[T]:
        """The connections still here whose time to join ran out by ``now``, each once (joined or not)."""
        queue = self._queue
        out: list[T] = []
        while queue and queue[0].at <= now:
            connection = queue.popleft().connection
            if connection is not None:
                out.append(connection)
        return out

    def __len__(self) -> int:
        return len(self._queue)

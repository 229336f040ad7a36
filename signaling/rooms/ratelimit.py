"""Per-connection message rate limit: a token bucket and what the protocol does when it refuses.

Pure: the caller passes the clock's reading, and gets back either "go on", the ``rate-limited`` reply to send,
or the verdict that the connection is abusive (the caller closes it).
"""

from __future__ import annotations

import json
from typing import Final

from signaling.protocol.encode import error_json
from signaling.protocol.errors import ErrorCode, valid_ref

__all__ = ["ABUSE_STRIKES", "MessageRateLimit", "TokenBucket"]

#: Refused messages in a row after which a flooding connection is treated as abusive (and closed).
ABUSE_STRIKES: Final = 100


class TokenBucket:
    """``rate`` messages per second on average, bursts of up to ``burst``.

    ``strikes`` counts refusals in a row; the caller treats a long run of them as persistent abuse.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate", "strikes")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now
        self.strikes = 0

    def allow(self, now: float) -> bool:
        tokens = self._tokens + (now - self._last) * self.rate
        self._last = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            self.strikes = 0
            return True
        self._tokens = tokens
        self.strikes += 1
        return False


class MessageRateLimit:
    """One connection's limit on client messages.

    ``admit(now)`` is the fast path, once per message. When it says no, ``refusal(text)`` gives the ``error``
    reply (``rate-limited``, with the message's ``id`` as ``ref``), or None once ``abuse_strikes`` messages in a
    row were refused: the caller should then close the connection (1008) instead of answering forever.
    """

    __slots__ = ("_bucket", "abuse_strikes")

    def __init__(self, rate: float, burst: float, now: float, *, abuse_strikes: int = ABUSE_STRIKES) -> None:
        self._bucket = TokenBucket(rate, burst, now)
        self.abuse_strikes = abuse_strikes

    def admit(self, now: float) -> bool:
        return self._bucket.allow(now)

    def refusal(self, text: str) -> str | None:
        bucket = self._bucket
        if bucket.strikes >= self.abuse_strikes:
            return None
        ref = None
        try:  # the slow path only: find the id so the client can match the error
            value = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(value, dict):
                ref = valid_ref(value.get("id"))
        return error_json(
            ErrorCode.RATE_LIMITED,
            f"over {bucket.rate:g} messages/s (burst {bucket.burst:g}); message dropped",
            ref,
        )

"""Per-connection message rate limit: a token bucket, pure (the caller passes the clock's reading)."""

from __future__ import annotations

__all__ = ["TokenBucket"]


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

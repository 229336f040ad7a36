"""A token bucket, the one rate limiter every layer uses (frames in the transport, messages and bytes in the
domain, connections per address in the process). Pure: the caller passes the clock's reading."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second on average, bursts of up to ``burst``; ``take(n, now)`` spends ``n``."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, n: float, now: float) -> bool:
        """Spend ``n`` tokens if there are that many (refilled up to ``now``); refused takes spend nothing."""
        tokens = self._tokens + (now - self._last) * self.rate
        self._last = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= n:
            self._tokens = tokens - n
            return True
        self._tokens = tokens
        return False

    def available(self, now: float) -> float:
        """The tokens there are at ``now`` (nothing is spent)."""
        return min(self.burst, self._tokens + (now - self._last) * self.rate)

    def wait(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are there (0 when they are), as of the last take."""
        return max(0.0, (n - self._tokens) / self.rate)

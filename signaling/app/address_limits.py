"""Per-address limits on WebSocket connections, so that one source cannot take everyone's slots.

Concurrent connections per client address, and new connections per second per address (a token bucket each).
A trusted proxy's own address is exempt: a connection that comes from one naming no client (a local tool, a
health check, a proxy that sends no header) is not a client's, and counting it would cap a whole site behind the
proxy at one address's share. Memory is bounded: counts exist only for addresses with open connections, and at
most ``max_addresses`` buckets are kept (the least recently used is dropped first, which can only give that
address a fresh burst).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from signaling.token_bucket import TokenBucket

__all__ = ["AddressLimits", "Refusal"]


class Refusal:
    """Why a connection from an address is refused, and when to retry."""

    __slots__ = ("reason", "retry_after", "text")

    def __init__(self, reason: str, text: str, retry_after: float) -> None:
        self.reason = reason
        self.text = text
        self.retry_after = retry_after


class AddressLimits:
    def __init__(
        self,
        max_per_address: int,
        rate: float,
        burst: int,
        *,
        max_addresses: int = 10_000,
        exempt: Callable[[str], bool] = lambda address: False,
    ) -> None:
        self.max_per_address = max_per_address
        self.exempt = exempt
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self.open: dict[str, int] = {}
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, address: str, now: float) -> Refusal | None:
        """Whether ``address`` may open one more connection now (spends one from its rate)."""
        if self.exempt(address):
            return None
        if self.max_per_address and self.open.get(address, 0) >= self.max_per_address:
            return Refusal(
                "connections_per_ip",
                f"too many connections from your address (limit {self.max_per_address}); close some first",
                5.0,
            )
        if self.rate:
            bucket = self._buckets.get(address)
            if bucket is None:
                bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
                while len(self._buckets) > self.max_addresses:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(address)
            if not bucket.take(1, now):
                return Refusal(
                    "connection_rate_per_ip",
                    f"too many new connections from your address (over {self.rate:g}/s); slow down",
                    max(1.0, bucket.wait()),
                )
        return None

    def opened(self, address: str) -> None:
        self.open[address] = self.open.get(address, 0) + 1

    def closed(self, address: str) -> None:
        count = self.open.get(address, 0) - 1
        if count > 0:
            self.open[address] = count
        else:
            self.open.pop(address, None)

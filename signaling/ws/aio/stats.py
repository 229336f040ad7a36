"""What the transport counts for /metrics: plain integers and bucket counts, cheap enough for the hot path.

The process turns these into Prometheus metrics at scrape time (signaling/app/metrics.py); the transport itself
imports nothing of Prometheus.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from typing import Final

__all__ = ["READ_SAMPLE", "Histogram", "TransportStats"]


#: The relay's read latency is timed on one read in this many (weighted so): a clock reading and a bucket search
#: per read are a measurable share of a 6 µs relay, and a sample of the reads gives the same distribution.
READ_SAMPLE: Final = 8


class Histogram:
    """Cumulative-ready bucket counts with a sum, like a Prometheus histogram: ``observe`` is one bisect."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        """Count ``value`` (``weight`` times: one observation standing for that many, when sampling)."""
        self.counts[bisect_left(self.bounds, value)] += weight
        self.sum += value * weight

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` pairs, ending with ``(inf, total)``."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class TransportStats:
    """Counts of one server's transport since it started."""

    __slots__ = ("closes", "handshakes", "read_seconds", "reads", "rejections", "send_buffer_peaks")

    def __init__(self) -> None:
        #: WebSocket handshakes accepted.
        self.handshakes = 0
        #: Requests the transport itself refused, by reason (bad_request, timeout, server_full, ...).
        self.rejections: Counter[str] = Counter()
        #: Closed WebSocket connections by the close code the application saw (any of 3000-4999 a client chose:
        #: at most some 2,000 counts; /metrics folds the ones it does not name).
        self.closes: Counter[int] = Counter()
        #: Reads that wrote to connections (the relay's reads).
        self.reads = 0
        #: Time to handle one read: parse, hand every message to the application (the relay), flush what it
        #: wrote to every connection. One read in READ_SAMPLE is timed, standing for all of them.
        self.read_seconds = Histogram((0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
        #: Per connection, at its end: the largest send buffer (bytes not yet taken by the kernel) it reached.
        self.send_buffer_peaks = Histogram((1024, 16384, 65536, 262144, 1048576, 4194304, 16777216))

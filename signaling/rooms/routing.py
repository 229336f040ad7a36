"""Where a member's texts go: to its connection in this process, or to the node its connection is on.

``send`` is synchronous and never waits: to a member connected here the text goes to its sink at once; to a
member elsewhere (the Redis router) it is queued for the member's node, in order. Order between two peers is
the order of the ``send`` calls. A resumable member's text is numbered and kept first (replay.py), connected or
not, so that a resume can replay it. Either way it reaches the connection through ``Deliveries`` (delivery.py),
which alone keeps the delivery rules.

``LocalRouter`` serves one process; signaling/cluster/ has the Redis router for several.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

import structlog

from .delivery import Deliveries
from .peers import Logger, Member
from .replay import InMemoryReplay

__all__ = ["LocalRouter", "Refused", "Router"]

#: Called when a text could not be handed over at all (a store that refused it: the cluster's Redis out of
#: memory), to tell its sender.
Refused = Callable[[], None]


class Router(ABC):
    """Hands texts to members wherever their connection is, and closes connections whose session moved."""

    def __init__(self, deliveries: Deliveries) -> None:
        self.deliveries = deliveries

    @abstractmethod
    def send(self, target: Member, text: str, refused: Refused | None = None) -> None:
        """Hand ``text`` to ``target``: numbered and kept when it is resumable, sent to its connection if any."""

    def send_all(self, members: Iterable[Member], skip: str, text: str, refused: Refused | None = None) -> None:
        """``text`` to every member but ``skip``. A copy of the members: a delivery may re-enter and change them."""
        send = self.send
        for member in list(members):
            if member.peer != skip:
                send(member, text, refused)

    @abstractmethod
    def take_over(self, peer: str, node: str) -> None:
        """``peer``'s session was resumed here: close its previous connection, on another node ``node``, if still
        open there (one on this node is closed by the session that displaced it: ``Deliveries.expect``)."""

    @abstractmethod
    def remove(self, peer: str, node: str) -> None:
        """``peer`` was removed by the application's backend: close its connection (4003) on ``node``, this one or
        another."""


class LocalRouter(Router):
    """The router of a single process: every member is connected here (or in its grace period here)."""

    def __init__(self, deliveries: Deliveries, replay: InMemoryReplay) -> None:
        super().__init__(deliveries)
        self._replay = replay
        self._sinks = deliveries.sinks
        self._log: Logger = structlog.get_logger("signaling.routing")

    def send(self, target: Member, text: str, refused: Refused | None = None) -> None:
        if target.resumable:
            seq, text = self._replay.number(target.peer, text)
            self.deliveries.deliver_numbered(target.peer, seq, text)
            return
        sink = self._sinks.get(target.peer)  # Deliveries.deliver inlined: the relay's hot path
        if sink is not None:
            try:
                sink.deliver(text)
            except Exception:  # a broken sink is its own connection's problem; it must not fail the sender's
                self._log.error("deliver failed", peer=target.peer, exc_info=True)

    def take_over(self, peer: str, node: str) -> None:
        """One process has no other node."""

    def remove(self, peer: str, node: str) -> None:
        self.deliveries.remove(peer)

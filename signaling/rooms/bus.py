"""Handing server->client texts to members: the message bus, with this process's registry of connections.

``deliver`` is synchronous and never waits: to a member connected here the text goes to its sink at once; to a
member elsewhere (the Redis bus) it is queued for the member's node, in order. Order between two peers is the
order of the ``deliver`` calls. For a resumable member the text is numbered and kept first (kept.py), connected
or not, so that a resume can replay it.

``LocalBus`` serves one process; signaling/cluster/ has the Redis bus for several.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

import structlog

from .kept import DEFAULT_KEPT_BYTES, DEFAULT_KEPT_COUNT, KeptMessages
from .peers import Logger, Member, PeerSink

__all__ = ["LocalBus", "MessageBus", "WriteBatching"]


class WriteBatching(Protocol):
    """The transport's write coalescing, for texts that arrive outside a client's read (from another node):
    between ``open()`` and ``close()``, each connection written to flushes once."""

    def open(self) -> None: ...
    def close(self) -> int: ...


class MessageBus(ABC):
    """Delivers texts to members, keeps those of resumable sessions, and closes connections taken over."""

    def __init__(self, *, kept_count: int = DEFAULT_KEPT_COUNT, kept_bytes: int = DEFAULT_KEPT_BYTES) -> None:
        self.kept_count = kept_count
        self.kept_bytes = kept_bytes
        #: This process's connections, by peer id.
        self.sinks: dict[str, PeerSink] = {}
        #: Set by the process: the transport's write batch, for deliveries made outside a client's read.
        self.batching: WriteBatching | None = None
        self._log: Logger = structlog.get_logger("signaling.bus")

    def attach(self, peer: str, sink: PeerSink) -> None:
        """``peer``'s connection is here: texts for it go to ``sink``."""
        self.sinks[peer] = sink

    def detach(self, peer: str, sink: PeerSink) -> None:
        """``sink`` is gone (unless the peer has already moved to another connection)."""
        if self.sinks.get(peer) is sink:
            del self.sinks[peer]

    def _to_sink(self, peer: str, text: str) -> None:
        sink = self.sinks.get(peer)
        if sink is not None:
            try:
                sink.deliver(text)
            except Exception:  # a broken sink is its own connection's problem; it must not fail the sender's
                self._log.error("deliver failed", peer=peer, exc_info=True)

    @abstractmethod
    def deliver(self, target: Member, text: str) -> None:
        """Hand ``text`` to ``target``: numbered and kept when it is resumable, sent to its connection if any."""

    @abstractmethod
    async def keep(self, peer: str) -> None:
        """Start keeping the messages of ``peer``'s new resumable session."""

    @abstractmethod
    async def kept_after(self, peer: str, last_seq: int) -> list[str] | None:
        """What ``peer`` missed after ``last_seq``, as sent; None when that is no longer all there."""

    @abstractmethod
    async def resume(self, peer: str, sink: PeerSink, last_seq: int, welcome: str) -> bool:
        """Resume ``peer`` on ``sink``: ``welcome``, then every kept message after ``last_seq``, then live ones, in
        order and none twice. False (and nothing sent) when the kept messages no longer reach back that far."""

    @abstractmethod
    async def forget(self, peer: str) -> None:
        """The session of ``peer`` is over: drop what was kept for it."""

    @abstractmethod
    def take_over(self, peer: str, node: str) -> None:
        """``peer``'s session was resumed here: close its previous connection, on ``node``, if still open."""


class LocalBus(MessageBus):
    """The bus of a single process: every member is connected here (or in its grace period here)."""

    def __init__(self, *, kept_count: int = DEFAULT_KEPT_COUNT, kept_bytes: int = DEFAULT_KEPT_BYTES) -> None:
        super().__init__(kept_count=kept_count, kept_bytes=kept_bytes)
        self._kept: dict[str, KeptMessages] = {}

    def deliver(self, target: Member, text: str) -> None:
        if target.resumable:
            kept = self._kept.get(target.peer)
            if kept is not None:
                text = kept.add(text)
        sink = self.sinks.get(target.peer)  # _to_sink inlined: the relay's hot path
        if sink is not None:
            try:
                sink.deliver(text)
            except Exception:
                self._log.error("deliver failed", peer=target.peer, exc_info=True)

    async def keep(self, peer: str) -> None:
        self._kept[peer] = KeptMessages(self.kept_count, self.kept_bytes)

    async def kept_after(self, peer: str, last_seq: int) -> list[str] | None:
        kept = self._kept.get(peer)
        return kept.after(last_seq) if kept is not None else None

    async def resume(self, peer: str, sink: PeerSink, last_seq: int, welcome: str) -> bool:
        kept = self._kept.get(peer)
        replay = kept.after(last_seq) if kept is not None else None
        if replay is None:
            return False
        self.sinks[peer] = sink
        for text in (welcome, *replay):
            sink.deliver(text)
        return True

    async def forget(self, peer: str) -> None:
        self._kept.pop(peer, None)

    def take_over(self, peer: str, node: str) -> None:
        sink = self.sinks.pop(peer, None)
        if sink is not None:
            sink.taken_over()

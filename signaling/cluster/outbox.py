"""The webhook outbox of a cluster: a Redis stream that library.lua's functions add to as they change the rooms.

An event is added in the same atomic function as the change it tells of, so a node that dies a moment later
loses nothing. One node at a time is the sender (a lease in Redis, renewed by each ``take``): it reads the stream
in order and deletes each event once it was delivered or given up. When the sender dies its lease lapses, the
next node to ask takes over from the oldest event left, so an event whose node died is still sent, and each
event is sent by one node only (twice at worst, with the same id, if a sender stalled past its lease).
"""

from __future__ import annotations

import secrets
from typing import Any, Final

import structlog

from signaling.protocol.facts import DEFAULT_WEBHOOK_QUEUE
from signaling.rooms.events import Outbox, RoomEvent

from .link import RedisLink, Unavailable

__all__ = ["LEAD_LEASE", "RedisOutbox"]

log = structlog.get_logger("signaling.cluster")

#: Seconds the sender's lease lasts unless renewed (the sender asks at least once a second): how long events wait
#: for another node after their sender died.
LEAD_LEASE: Final = 5.0


class RedisOutbox(Outbox):
    """The cluster's outbox as one node sees it: ``take`` answers None while another node is the sender."""

    waits = True

    def __init__(self, limit: int = DEFAULT_WEBHOOK_QUEUE, lease: float = LEAD_LEASE) -> None:
        self.limit = limit
        self.lease = lease
        #: This node's part of the event ids, if it is the first to turn the outbox on (library.lua).
        self.nonce = secrets.token_hex(6)
        self._link: RedisLink | None = None
        self._after = ""
        self._depth = 0
        self._lost = 0

    def register_args(self) -> tuple[str, int]:
        """What ``signaling_register`` takes to turn the outbox on."""
        return self.nonce, self.limit

    def link_up(self, link: RedisLink) -> None:
        self._link = link

    def link_down(self) -> None:
        self._link = None

    def poke(self) -> None:
        """A membership change was published: events may have been added."""
        if self.wake is not None:
            self.wake()

    async def take(self, limit: int) -> list[RoomEvent] | None:
        link = self._link
        if link is None or not link.up:
            self._after = ""
            return None
        try:
            reply = await link.fcall("signaling_outbox_take", link.node, self._after, limit, int(self.lease * 1000))
        except Unavailable as exc:
            log.warning("webhook_outbox_unavailable", error=str(exc))
            self._after = ""
            return None
        if reply[0] != "lead":
            self._after = ""
            return None
        self._depth, self._lost = int(reply[1]), int(reply[2])
        events = [_event(key, fields) for key, fields in (reply[3] if len(reply) > 3 else [])]
        if events:
            self._after = events[-1].key
        return events

    async def done(self, events: list[RoomEvent]) -> None:
        link = self._link
        if link is None or not events:
            return
        try:
            await link.call("XDEL", link.names.outbox, *(event.key for event in events))
        except Unavailable as exc:  # the next sender sends them again, with their ids: receivers dedupe
            log.warning("webhook_outbox_unavailable", error=str(exc))

    def depth(self) -> int:
        return self._depth

    def lost(self) -> int:
        return self._lost


def _event(key: str, flat: list[Any]) -> RoomEvent:
    """An event from its stream entry (library.lua's ``record``); its id is the cluster's nonce and the entry's."""
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    return RoomEvent(
        id=f"msg_{fields['n']}_{key}",
        type=fields["t"],
        room=fields["r"],
        seq=int(fields["s"]),
        at_ms=int(fields["ms"]),
        peer=fields.get("p", ""),
        detail=fields.get("d", ""),
        key=key,
    )

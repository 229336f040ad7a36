"""The message bus of a cluster: texts to members wherever their connection is, through Redis when elsewhere.

A plain member connected here gets its text at once, as in one process; one connected to another node gets it
published to that node's channel. A resumable member's texts are numbered and kept in Redis by
``signaling_deliver``, which then publishes to whichever node its connection is on (none in a grace period),
so that a session resumed on any node can be replayed what it missed. Everything goes through the node's
single ordered command stream (link.py): the texts of one sender reach each peer in order.
"""

from __future__ import annotations

import structlog

from signaling.rooms.bus import MessageBus
from signaling.rooms.kept import DEFAULT_KEPT_BYTES, DEFAULT_KEPT_COUNT, numbering
from signaling.rooms.peers import Member, PeerSink

from .directory import unavailable
from .link import RedisLink, Unavailable
from .schema import RECORD_SEPARATOR, parse_delivery, plain_delivery, takeover_delivery

__all__ = ["RedisBus"]

log = structlog.get_logger("signaling.cluster")


class RedisBus(MessageBus):
    """``attach_link`` gives it a link; without one (Redis lost) texts are dropped: the clients are being closed."""

    def __init__(self, *, kept_count: int = DEFAULT_KEPT_COUNT, kept_bytes: int = DEFAULT_KEPT_BYTES) -> None:
        super().__init__(kept_count=kept_count, kept_bytes=kept_bytes)
        self.node = ""
        self._link: RedisLink | None = None
        #: Live texts for peers being resumed here, held until their replay is out: (seq, text).
        self._resuming: dict[str, list[tuple[int, str]]] = {}

    def attach_link(self, link: RedisLink) -> None:
        self._link = link
        self.node = link.node

    def detach_link(self) -> None:
        self._link = None
        self._resuming.clear()

    # ------------------------------------------------------------------ sending

    def deliver(self, target: Member, text: str) -> None:
        link = self._link
        if target.resumable:
            if link is not None:
                head, tail = numbering(text)
                link.keep(target.peer, head, tail, self.kept_count, self.kept_bytes)
        elif target.node == self.node:
            self._to_sink(target.peer, text)
        elif link is not None:
            link.publish(link.names.node_channel(target.node), plain_delivery(target.peer, text))

    def take_over(self, peer: str, node: str) -> None:
        if node == self.node:
            sink = self.sinks.pop(peer, None)
            if sink is not None:
                sink.taken_over()
        elif node and self._link is not None:
            self._link.publish(self._link.names.node_channel(node), takeover_delivery(peer))

    # ------------------------------------------------------------------ receiving

    def on_delivery(self, payload: str) -> None:
        batching = self.batching
        if batching is None:
            self._hand_out(payload)
            return
        batching.open()  # one write per connection for the whole message, however many texts it carries
        try:
            self._hand_out(payload)
        finally:
            batching.close()

    def _hand_out(self, payload: str) -> None:
        for record in payload.split(RECORD_SEPARATOR):
            delivery = parse_delivery(record)
            peer = delivery.peer
            if delivery.text is None:
                sink = self.sinks.pop(peer, None)
                if sink is not None:
                    sink.taken_over()
                continue
            held = self._resuming.get(peer)
            if held is not None:
                held.append((delivery.seq, delivery.text))
            else:
                self._to_sink(peer, delivery.text)

    # ------------------------------------------------------------------ kept messages

    async def keep(self, peer: str) -> None:
        """Nothing to do: ``signaling_join`` started the numbering of a resumable member."""

    async def kept_after(self, peer: str, last_seq: int) -> list[str] | None:
        link = self._link
        if link is None:
            raise unavailable()
        try:
            reply = await link.fcall("signaling_kept", peer, last_seq)
        except Unavailable:
            raise unavailable() from None
        return list(reply[1:]) if reply[0] == "ok" else None

    async def resume(self, peer: str, sink: PeerSink, last_seq: int, welcome: str) -> bool:
        # Live texts may arrive while the replay is read: hold them, then send those past the replay.
        held = self._resuming[peer] = []
        try:
            replay = await self.kept_after(peer, last_seq)
        finally:
            self._resuming.pop(peer, None)
        if replay is None:
            return False
        for text in (welcome, *replay):
            sink.deliver(text)
        last = last_seq + len(replay)
        for seq, text in held:
            if seq > last:
                sink.deliver(text)
                last = seq
        self.sinks[peer] = sink
        return True

    async def forget(self, peer: str) -> None:
        """Nothing to do: leaving the room in Redis dropped what was kept."""

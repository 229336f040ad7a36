"""The router of a cluster: texts to members wherever their connection is, through Redis when elsewhere.

A plain member connected here gets its text at once, as in one process; one connected to another node gets it
published to that node's channel. A resumable member's texts are numbered and kept in Redis by
``signaling_deliver``, which then publishes them to whichever node its connection is on (none in a grace
period), so that a session resumed on any node can be replayed what it missed. Everything goes through the
node's single ordered command stream (link.py): the texts of one sender reach each peer in order.

A resumable member's text is never lost with the link: those the lost link had not confirmed, and those sent
while there is none, wait here (up to ``WAITING_BYTES``) and go first on the next link, where Redis runs each
once (link.py). Its session resumes once the node is back, and is replayed them.

What arrives on this node's channel is handed to ``Deliveries`` (signaling/rooms/delivery.py), which keeps the
delivery rules: a numbered text that a resume's replay already carried is dropped there.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Final

import structlog

from signaling.rooms.delivery import Deliveries
from signaling.rooms.peers import Member
from signaling.rooms.replay import NUMBER_TAIL, numbering, with_number
from signaling.rooms.routing import Refused, Router

from .link import Numbered, RedisLink
from .schema import RECORD_SEPARATOR, parse_delivery, plain_delivery, recipients, removal_delivery, takeover_delivery

__all__ = ["WAITING_BYTES", "RedisRouter"]

log = structlog.get_logger("signaling.cluster")

#: Bytes of texts for resumable members kept while Redis is lost, at most (the node closes its clients meanwhile,
#: so few come; counted in bytes, since one text may be 64 KiB): beyond it the oldest go, and their sessions
#: resume with a gap, as fresh ones.
WAITING_BYTES: Final = 32 * 1024 * 1024


class RedisRouter(Router):
    """Routes through the node's link (``link_up``). Without one (Redis lost), texts for resumable members wait
    for the next; plain texts for other nodes are dropped: the node is closing its clients, and plain sessions
    end with their connection.

    A text for several members crosses Redis once per node, naming its recipients there, never once per
    recipient: a broadcast into a room costs Redis (and each receiving node's subscription) its size once per
    node, whatever the room's size. ``refused`` counts the texts Redis refused (out of memory, say)."""

    def __init__(self, deliveries: Deliveries, *, kept_count: int, kept_bytes: int) -> None:
        super().__init__(deliveries)
        self.kept_count = kept_count
        self.kept_bytes = kept_bytes
        self.node = ""
        self.refused = 0
        self._link: RedisLink | None = None
        #: Numbered deliveries a lost link left unconfirmed, and texts for resumable members sent since.
        self._unconfirmed: list[Numbered] = []
        self._waiting: collections.deque[tuple[str, str]] = collections.deque()
        self._waiting_bytes = 0

    def link_up(self, link: RedisLink) -> None:
        link.resend(self._unconfirmed)
        for peers, head in self._waiting:
            link.keep(peers, head, NUMBER_TAIL, self.kept_count, self.kept_bytes)
        self._unconfirmed = []
        self._waiting.clear()
        self._waiting_bytes = 0
        self._link = link
        self.node = link.node

    def link_down(self, lost: RedisLink | None = None) -> None:
        """No link; ``lost``, the link that failed, gives the deliveries it did not see through."""
        self._link = None
        if lost is not None:
            self._unconfirmed += lost.unconfirmed()

    # ------------------------------------------------------------------ sending

    def send(self, target: Member, text: str, refused: Refused | None = None) -> None:
        if target.resumable:
            self._keep(target.peer, text, refused)
        elif target.node == self.node:
            self.deliveries.deliver(target.peer, text)
        elif (link := self._link) is not None:
            link.publish(link.names.node_channel(target.node), plain_delivery([target.peer], text))

    def send_all(self, members: Iterable[Member], skip: str, text: str, refused: Refused | None = None) -> None:
        kept: list[str] = []
        remote: dict[str, list[str]] = {}
        node = self.node
        for member in list(members):
            peer = member.peer
            if peer == skip:
                continue
            if member.resumable:
                kept.append(peer)
            elif member.node == node:
                self.deliveries.deliver(peer, text)
            else:
                remote.setdefault(member.node, []).append(peer)
        if kept:
            self._keep(recipients(kept), text, refused)
        link = self._link
        if remote and link is not None:
            for other, peers in remote.items():
                link.publish(link.names.node_channel(other), plain_delivery(peers, text))

    def _keep(self, peers: str, text: str, refused: Refused | None) -> None:
        head = numbering(text)
        if self._link is not None:
            self._link.keep(peers, head, NUMBER_TAIL, self.kept_count, self.kept_bytes, refused)
            return
        waiting = self._waiting
        waiting.append((peers, head))
        self._waiting_bytes += len(head)
        if self._waiting_bytes > WAITING_BYTES:
            while self._waiting_bytes > WAITING_BYTES:
                self._waiting_bytes -= len(waiting.popleft()[1])
            log.warning("cluster_waiting_dropped", kept_bytes=WAITING_BYTES)

    def on_refused(self, call: Numbered, error: str) -> None:
        """Redis refused a ``signaling_deliver`` call (out of memory, say): its texts were neither kept nor sent.
        Counted, logged, and each sender told (``refused``); the recipients' sessions resume with a gap."""
        self.refused += call.count
        log.error("cluster_delivery_refused", texts=call.count, error=error)
        for refused in call.refused:
            if refused is not None:
                refused()

    def take_over(self, peer: str, node: str) -> None:
        if self._link is not None:
            self._link.publish(self._link.names.node_channel(node), takeover_delivery(peer))

    def remove(self, peer: str, node: str) -> None:
        if node == self.node:
            self.deliveries.remove(peer)
        elif self._link is not None:
            self._link.publish(self._link.names.node_channel(node), removal_delivery(peer))

    # ------------------------------------------------------------------ receiving

    def on_delivery(self, payload: str) -> None:
        """A message on this node's channel: its records, in order, to this node's connections."""
        deliveries = self.deliveries
        for record in payload.split(RECORD_SEPARATOR):
            delivery = parse_delivery(record)
            text = delivery.text
            if delivery.removed:
                deliveries.remove(delivery.peers[0])
            elif text is None:
                deliveries.take_over(delivery.peers[0])
            elif delivery.seqs is not None:
                for peer, seq in zip(delivery.peers, delivery.seqs, strict=True):
                    deliveries.deliver_numbered(peer, seq, with_number(text, seq))
            else:
                for peer in delivery.peers:
                    deliveries.deliver(peer, text)

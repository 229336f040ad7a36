"""What a cluster keeps in Redis and says on its channels: the one place that names them in Python.

library.lua, the Redis functions that change the state, uses the same names. With the prefix P (default
``signaling``):

==========================  ====================================================================================
``P:m:<peer>``              hash: a member: ``room``, ``j`` (its ``peer_entry_json``), ``node`` (where its
                            connection is; empty in a grace period), ``res`` (resumable: 1/0), ``lease`` (its
                            resume token's digest), ``seq`` (last number given), ``kb`` (bytes kept), ``g`` (the
                            ghost budgets it is charged to in its grace period, space-separated)
``P:k:<peer>``              list: the numbered messages kept for a resumable member
``P:r:<room>``              sorted set: the members of a room, scored in join order
``P:rooms``                 hash: room -> version of its last change (its length is the number of rooms)
``P:peers``                 set: every member
``P:leases``                hash: resume token digest -> peer
``P:graces``                sorted set: members in a grace period, scored by its end (Unix seconds)
``P:nodes``                 hash: node -> when it registered (a live node)
``P:alive:<node>``          a node's heartbeat: a key that expires unless renewed
``P:dead``                  set: nodes gone (heartbeat lapsed, or retired) whose members are still being handed out
``P:n:<node>``              set: the members whose connection is on a node
``P:g:<budget>``            sorted set: the sessions in their grace period charged to a budget (``a:<address>``,
                            ``n:<node>``: see ``RoomDirectory.ghost_budgets``), scored by the end of their grace
``P:sent:<sender>``         the last ``signaling_deliver`` call a process ran (each runs once; kept a day)
``P:order``, ``P:version``  counters: join order, and the version of membership changes
``P:seq``                   hash: room -> the number of its last webhook event (``signaling.rooms.events``)
``P:wh``                    stream: the webhook outbox, events not yet delivered or given up (cluster/outbox.py)
``P:wh:on``                 hash: the outbox is on (a node sends webhooks): ``n`` (the ids' nonce), ``max``
``P:wh:lead``               the node that sends the webhooks: a lease it renews
``P:wh:lost``               counter: events not recorded because the outbox was full
==========================  ====================================================================================

Every key expires (library.lua, ``STATE_TTL_MS``: an hour) unless the nodes keep renewing it, so nothing is left
once the last node has stopped or died.

Channels: ``P:members`` carries every membership change as ``room|version|change``; ``P:node:<node>`` carries
what a node must hand to its connections (texts, takeovers, removals): records (see :func:`parse_delivery`)
separated by newlines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Final, Literal

from signaling.rooms.peers import Member

__all__ = [
    "LIBRARY",
    "RECORD_SEPARATOR",
    "Change",
    "Delivery",
    "Names",
    "member_from",
    "parse_change",
    "parse_delivery",
    "plain_delivery",
    "recipients",
    "removal_delivery",
    "takeover_delivery",
]

#: Between the records of one message on a node's channel: a JSON text never holds a raw newline (control
#: characters are escaped inside strings), so neither does a record.
RECORD_SEPARATOR: Final = "\n"

#: The Redis function library (library.lua): loaded by every node at start, replacing an older copy.
LIBRARY: Final = resources.files(__package__).joinpath("library.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Names:
    """The keys and channels of one cluster (the prefix separates several clusters on one Redis)."""

    prefix: str

    @property
    def members_channel(self) -> str:
        return self.prefix + ":members"

    def node_channel(self, node: str) -> str:
        return self.prefix + ":node:" + node

    @property
    def outbox(self) -> str:
        return self.prefix + ":wh"


def member_from(room: str, j: str, node: str, resumable: str) -> Member:
    """A member as library.lua returns it (``j``, ``node``, ``res``)."""
    entry = json.loads(j)
    return Member(entry["peer"], room, entry["name"], entry["meta"], node, resumable == "1")


@dataclass(frozen=True, slots=True)
class Change:
    """A membership change: ``join`` (``member``), ``leave`` (``peer``) or ``move`` (``peer`` to ``node``)."""

    room: str
    version: int
    kind: Literal["join", "leave", "move"]
    peer: str
    node: str = ""
    member: Member | None = None


def parse_change(payload: str) -> Change:
    room, version, rest = payload.split("|", 2)
    kind, _, rest = rest.partition("|")
    if kind == "j":
        node, resumable, j = rest.split("|", 2)
        member = member_from(room, j, node, resumable)
        return Change(room, int(version), "join", member.peer, node, member)
    if kind == "l":
        return Change(room, int(version), "leave", rest)
    if kind == "n":
        peer, node = rest.split("|", 1)
        return Change(room, int(version), "move", peer, node)
    raise ValueError(f"unknown membership change {payload[:80]!r}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One record of a node's channel: a text for some of the node's peers, or a takeover or a removal (``peers``
    has the one peer, ``text`` is None). A numbered text is one record for all its recipients on the node:
    ``seqs`` holds each one's number and ``text`` its ``numbering`` (replay.py), not a copy per recipient."""

    peers: list[str]
    text: str | None
    seqs: list[int] | None = None
    removed: bool = False


def recipients(peers: list[str]) -> str:
    """A record's recipients (peer ids are URL-safe: never a comma or a bar)."""
    return ",".join(peers)


def plain_delivery(peers: list[str], text: str) -> str:
    return "d|" + recipients(peers) + "|" + text


def takeover_delivery(peer: str) -> str:
    return "t|" + peer


def removal_delivery(peer: str) -> str:
    return "x|" + peer


def parse_delivery(payload: str) -> Delivery:
    """``d|peers|text``, ``s|peer:seq,peer:seq|head`` (numbered, by library.lua's ``signaling_deliver``),
    ``t|peer`` (a takeover) or ``x|peer`` (a removal)."""
    kind = payload[:2]
    if kind == "d|":
        named, text = payload[2:].split("|", 1)
        return Delivery(named.split(","), text)
    if kind == "s|":
        named, head = payload[2:].split("|", 1)
        peers: list[str] = []
        seqs: list[int] = []
        for entry in named.split(","):
            peer, seq = entry.split(":")
            peers.append(peer)
            seqs.append(int(seq))
        return Delivery(peers, head, seqs)
    if kind == "t|":
        return Delivery([payload[2:]], None)
    if kind == "x|":
        return Delivery([payload[2:]], None, removed=True)
    raise ValueError(f"unknown delivery {payload[:80]!r}")

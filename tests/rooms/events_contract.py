"""What every room backend records for webhooks (signaling/rooms/events.py), in memory and on Redis alike.

Run by tests/rooms/test_backends.py and tests/cluster/test_backends.py, whose ``backend`` fixture makes nodes;
``backend(webhook_queue=N)`` gives them an outbox bounded at N events.
"""

from __future__ import annotations

import json
from typing import Any

from signaling.rooms.events import LeftBecause, Outbox, RoomEvent
from tests.rooms.contract import NOW, Backend, lease_of, member

__all__ = ["EventsContract"]


async def drained(outbox: Outbox) -> list[RoomEvent]:
    """Every event the outbox holds now, taken and done (this process becomes the sender if it can)."""
    events: list[RoomEvent] = []
    while batch := await outbox.take(100):
        events += batch
        await outbox.done(batch)
    return events


def summary(events: list[RoomEvent]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for event in events:
        data = json.loads(event.body())["data"]
        out.append((event.type, data["room"], data["seq"], data.get("peer"), data.get("reason")))
    return out


class EventsContract:
    async def test_a_rooms_life_is_numbered_from_one_without_gaps(self, backend: Backend) -> None:
        node = await backend(webhook_queue=100)
        directory, outbox = node.backends.directory, node.backends.outbox
        a, b, c = member(directory, name="ann"), member(directory), member(directory)
        a.meta = {"role": "host"}
        await directory.join(a)
        await directory.join(b)
        await directory.join(c)
        await directory.leave(b.peer)
        assert (await directory.roster("r")).seq == 5
        assert [(r.room, r.peers, r.seq) for r in await directory.rooms("", 10)] == [("r", 2, 5)]
        assert await node.backends.remove("r", c.peer)
        await directory.leave(a.peer, reason=LeftBecause.DROPPED)
        events = await drained(outbox)
        assert summary(events) == [
            ("room.started", "r", 1, None, None),
            ("peer.joined", "r", 2, a.peer, None),
            ("peer.joined", "r", 3, b.peer, None),
            ("peer.joined", "r", 4, c.peer, None),
            ("peer.left", "r", 5, b.peer, "left"),
            ("peer.left", "r", 6, c.peer, "removed"),
            ("peer.left", "r", 7, a.peer, "dropped"),
            ("room.finished", "r", 8, None, None),
        ]
        joined = json.loads(events[1].body())
        assert joined["data"] == {"room": "r", "seq": 2, "peer": a.peer, "name": "ann", "meta": {"role": "host"}}
        assert joined["type"] == "peer.joined" and joined["timestamp"].endswith("Z")
        assert len({e.id for e in events}) == len(events)
        assert (await directory.roster("r")).seq == 0  # gone with the room
        again = member(directory)
        await directory.join(again)  # a new life of the room: numbered from 1 again
        assert summary(await drained(outbox)) == [
            ("room.started", "r", 1, None, None),
            ("peer.joined", "r", 2, again.peer, None),
        ]

    async def test_a_drop_that_resumes_is_no_event_and_one_that_does_not_expires(self, backend: Backend) -> None:
        node = await backend(webhook_queue=100)
        directory, outbox = node.backends.directory, node.backends.outbox
        a, b = member(directory, resumable=True), member(directory)
        await directory.join(a, lease_of(a))
        await directory.join(b)
        await drained(outbox)
        await directory.release(a.peer, lease_of(a), NOW + 10)
        claimed = await directory.claim(lease_of(a), "second", NOW)
        assert claimed is not None
        await directory.release(a.peer, "second", NOW + 10)
        assert await drained(outbox) == []  # no flapping: nothing happened as far as the room is concerned
        ended = await directory.expired(NOW + 11)
        assert [d.member.peer for d in ended] == [a.peer]
        assert summary(await drained(outbox)) == [("peer.left", "r", 4, a.peer, "expired")]

    async def test_a_ghost_ended_by_its_budget_expires(self, backend: Backend) -> None:
        node = await backend(webhook_queue=100, max_ghosts_per_address=1)
        directory, outbox = node.backends.directory, node.backends.outbox
        first, second = member(directory, "one", resumable=True), member(directory, "two", resumable=True)
        for who in (first, second):
            await directory.join(who, lease_of(who))
        await drained(outbox)
        await directory.release(first.peer, lease_of(first), NOW + 60, "192.0.2.1")
        await directory.release(second.peer, lease_of(second), NOW + 61, "192.0.2.1")
        assert summary(await drained(outbox)) == [
            ("peer.left", "one", 3, first.peer, "expired"),
            ("room.finished", "one", 4, None, None),
        ]

    async def test_a_full_outbox_loses_new_events_and_counts_them(self, backend: Backend) -> None:
        node = await backend(webhook_queue=3)
        directory, outbox = node.backends.directory, node.backends.outbox
        for _ in range(3):
            await directory.join(member(directory))  # 4 events: started and 3 joins
        assert await outbox.take(0) == []  # (a cluster's counts are read as its sender takes)
        assert (outbox.lost(), outbox.depth()) == (1, 3)
        events = await drained(outbox)
        assert [e.seq for e in events] == [1, 2, 3]  # the gap after 3 tells the receiver one is missing
        assert (await directory.roster("r")).seq == 4

    async def test_without_webhooks_rooms_are_still_numbered(self, backend: Backend) -> None:
        node = await backend()
        directory = node.backends.directory
        assert node.backends.outbox is None
        await directory.join(member(directory))
        await directory.join(member(directory))
        assert (await directory.roster("r")).seq == 3

"""What every RoomDirectory and MessageBus must do, whatever holds the state: one process's dicts or Redis.

The test classes here are run by a subclass that provides the ``backend`` fixture: tests/rooms for the in-memory
pair, tests/cluster for the Redis one. Deliveries are awaited (``RecordingSink.received``), since a backend may
take a round trip to make them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import pytest

from signaling.protocol.errors import ErrorCode, SignalingError
from signaling.rooms.bus import MessageBus
from signaling.rooms.directory import RoomDirectory
from signaling.rooms.peers import Member
from tests.helpers.sinks import RecordingSink

__all__ = ["Backend", "BusContract", "DirectoryContract", "Node"]

NOW = 1_800_000_000.0


class Node(Protocol):
    """One server process's view: its directory and its bus."""

    directory: RoomDirectory
    bus: MessageBus

    async def settle(self) -> None:
        """Until ``directory.stats()`` counts every change made so far (a cluster's counts lag a heartbeat)."""


#: Makes a node of a fresh deployment with these room limits (every call of one test shares the deployment).
Backend = Callable[..., Any]


def member(directory: RoomDirectory, room: str = "r", *, resumable: bool = False, name: str | None = None) -> Member:
    return Member(directory.new_peer_id(), room, name, None, directory.node, resumable)


def text(n: int) -> str:
    return '{"type":"message","from":"x","data":' + str(n) + "}"


class DirectoryContract:
    @pytest.fixture
    async def node(self, backend: Backend) -> AsyncIterator[Node]:
        yield await backend(max_peers_per_room=3, max_rooms=2)

    async def test_join_lists_who_was_there_in_join_order(self, node: Node) -> None:
        directory = node.directory
        a, b, c = (member(directory, name=n) for n in "abc")
        assert await directory.join(a) == []
        assert [m.peer for m in await directory.join(b)] == [a.peer]
        assert [m.peer for m in await directory.join(c)] == [a.peer, b.peer]
        assert list(directory.members("r")) == [a.peer, b.peer, c.peer]
        found = directory.members("r")[b.peer]
        assert (found.name, found.room, found.node, found.resumable) == ("b", "r", directory.node, False)
        assert directory.members("elsewhere") == {}
        await node.settle()
        stats = directory.stats()
        assert (stats.rooms, stats.peers, stats.local_peers) == (1, 3, 3)

    async def test_room_and_server_limits(self, node: Node) -> None:
        directory = node.directory
        for _ in range(3):
            await directory.join(member(directory))
        with pytest.raises(SignalingError) as full:
            await directory.join(member(directory))
        assert full.value.code is ErrorCode.ROOM_FULL and "3 peers" in full.value.message
        await directory.join(member(directory, "second"))
        with pytest.raises(SignalingError) as no_room:
            await directory.join(member(directory, "third"))
        assert no_room.value.code is ErrorCode.ROOM_FULL and "limit of 2 rooms" in no_room.value.message
        await node.settle()
        assert directory.stats().rooms == 2

    async def test_leave_tells_who_is_left_and_an_empty_room_goes(self, node: Node) -> None:
        directory = node.directory
        a, b = member(directory), member(directory)
        await directory.join(a)
        await directory.join(b)
        gone = await directory.leave(a.peer)
        assert gone is not None and gone.member.peer == a.peer and [m.peer for m in gone.others] == [b.peer]
        assert await directory.leave(a.peer) is None
        gone = await directory.leave(b.peer)
        assert gone is not None and gone.others == []
        await node.settle()
        assert directory.members("r") == {} and directory.stats().rooms == 0
        await directory.join(member(directory, "third"))  # the room count went down: a new room fits
        await directory.join(member(directory, "fourth"))

    async def test_a_lease_is_claimed_once_and_rotates(self, node: Node) -> None:
        directory = node.directory
        a = member(directory, resumable=True)
        await directory.join(a, "lease-1")
        await directory.release(a.peer, "lease-1", NOW + 30)
        claimed = await directory.claim("lease-1", "lease-2", NOW)
        assert claimed is not None
        again, previous = claimed
        assert (again.peer, again.room, again.node, previous) == (a.peer, "r", directory.node, "")
        assert await directory.claim("lease-1", "lease-3", NOW) is None  # used up
        assert await directory.claim("unknown", "lease-3", NOW) is None
        # The connection left behind cannot end or release the session it lost.
        assert await directory.leave(a.peer, "lease-1") is None
        await directory.release(a.peer, "lease-1", NOW + 1)
        assert await directory.expired(NOW + 100) == []
        assert list(directory.members("r")) == [a.peer]
        gone = await directory.leave(a.peer, "lease-2")
        assert gone is not None

    async def test_a_live_connection_can_be_claimed_too(self, node: Node) -> None:
        directory = node.directory
        a = member(directory, resumable=True)
        await directory.join(a, "lease-1")
        claimed = await directory.claim("lease-1", "lease-2", NOW)  # a takeover
        assert claimed is not None and claimed[1] == directory.node

    async def test_grace_runs_out_once(self, node: Node) -> None:
        directory = node.directory
        a, b = member(directory, resumable=True), member(directory)
        await directory.join(a, "lease-1")
        await directory.join(b)
        await directory.release(a.peer, "lease-1", NOW + 30)
        assert await directory.expired(NOW + 29) == []
        assert await directory.claim("lease-1", "lease-2", NOW + 31) is None  # due, even if not yet swept
        ended = await directory.expired(NOW + 31)
        assert [(g.member.peer, [m.peer for m in g.others]) for g in ended] == [(a.peer, [b.peer])]
        assert await directory.expired(NOW + 31) == []
        assert list(directory.members("r")) == [b.peer]

    async def test_peer_ids_are_unguessable_and_distinct(self, node: Node) -> None:
        ids = {node.directory.new_peer_id() for _ in range(200)}
        assert len(ids) == 200 and all(len(peer) >= 16 for peer in ids)


class BusContract:
    @pytest.fixture
    async def node(self, backend: Backend) -> AsyncIterator[Node]:
        yield await backend()

    async def joined(self, node: Node, *, resumable: bool = False) -> tuple[Member, RecordingSink]:
        who = member(node.directory, resumable=resumable)
        await node.directory.join(who, "lease-" + who.peer if resumable else None)
        if resumable:
            await node.bus.keep(who.peer)
        sink = RecordingSink()
        node.bus.attach(who.peer, sink)
        return who, sink

    async def test_a_plain_member_gets_the_text_as_is(self, node: Node) -> None:
        who, sink = await self.joined(node)
        for n in range(3):
            node.bus.deliver(who, text(n))
        assert [m["data"] for m in await sink.received(3)] == [0, 1, 2]
        assert "seq" not in sink.texts

    async def test_a_resumable_member_gets_numbered_texts_that_are_kept(self, node: Node) -> None:
        who, sink = await self.joined(node, resumable=True)
        for n in range(3):
            node.bus.deliver(who, text(n))
        assert [(m["data"], m["seq"]) for m in await sink.received(3)] == [(0, 1), (1, 2), (2, 3)]
        kept = await node.bus.kept_after(who.peer, 1)
        assert kept == [text(1)[:-1] + ',"seq":2}', text(2)[:-1] + ',"seq":3}']
        assert await node.bus.kept_after(who.peer, 4) is None  # beyond the last sent
        await node.directory.leave(who.peer)  # as a session ends: leave, then forget
        await node.bus.forget(who.peer)
        assert await node.bus.kept_after(who.peer, 0) is None

    async def test_resume_replays_then_goes_live_in_order(self, node: Node) -> None:
        who, old = await self.joined(node, resumable=True)
        node.bus.deliver(who, text(0))
        await old.received(1)
        node.bus.detach(who.peer, old)
        for n in (1, 2):
            node.bus.deliver(who, text(n))  # kept while away
        new = RecordingSink()
        assert await node.bus.resume(who.peer, new, 0, '{"type":"welcome"}')
        node.bus.deliver(who, text(3))
        got = await new.received(5)
        assert [m.get("seq") for m in got] == [None, 1, 2, 3, 4]
        assert old.texts == []

    async def test_resume_past_what_is_kept_sends_nothing(self, node: Node) -> None:
        node.bus.kept_count = 2
        who, sink = await self.joined(node, resumable=True)
        for n in range(4):
            node.bus.deliver(who, text(n))
        await sink.received(4)
        new = RecordingSink()
        assert not await node.bus.resume(who.peer, new, 1, '{"type":"welcome"}')  # 3 and 4 kept: 2 is gone
        assert await node.bus.resume(who.peer, new, 2, '{"type":"welcome"}')
        assert [m.get("seq") for m in await new.received(3)] == [None, 3, 4]

    async def test_take_over_closes_the_old_connection(self, node: Node) -> None:
        who, sink = await self.joined(node, resumable=True)
        node.bus.take_over(who.peer, node.directory.node)
        await sink.until_taken_over()

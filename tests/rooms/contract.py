"""What every room backend must do, whatever holds the state: one process's dicts or Redis.

The test classes here are run by a subclass that provides the ``backend`` fixture: tests/rooms for the in-memory
backends, tests/cluster for the Redis ones. Deliveries are awaited (``RecordingSink.received``), since a backend
may take a round trip to make them.

The delivery rules ("in order, none twice, none lost", signaling/rooms/delivery.py) are tested here on both
backends, with the races that Redis allows forced in their bad order: a node can hold what its channel carries
(``holding_deliveries``) until after a step, and wait until everything published to it so far has arrived
(``settle_deliveries``). In one process those races cannot happen; the same steps must give the same result.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import pytest

from signaling.protocol.errors import ErrorCode, SignalingError
from signaling.rooms.backends import Backends
from signaling.rooms.directory import PeerTaken, RoomDirectory, RoomSummary, Roster
from signaling.rooms.peers import Member
from tests.helpers.sinks import RecordingSink
from tests.helpers.wait import wait_until

__all__ = ["Backend", "DeliveryContract", "DirectoryContract", "Node"]

NOW = 1_800_000_000.0
WELCOME = '{"type":"welcome"}'
STEP = 5.0


class Node(Protocol):
    """One server process's room layer."""

    backends: Backends

    async def settle(self) -> object:
        """Until ``directory.stats()`` counts every change made so far (a cluster's counts lag a heartbeat)."""

    def holding_deliveries(self) -> contextlib.AbstractAsyncContextManager[None]:
        """While in the block, what other processes send to this one waits; it is handed over at the block's end."""

    async def settle_deliveries(self) -> None:
        """Until everything sent to this process so far has been handed to its deliveries."""


#: Makes a node of a fresh deployment with these room limits (every call of one test shares the deployment).
Backend = Callable[..., Any]


def member(directory: RoomDirectory, room: str = "r", *, resumable: bool = False, name: str | None = None) -> Member:
    return Member(directory.new_peer_id(), room, name, None, directory.node, resumable)


def text(n: int) -> str:
    return '{"type":"message","from":"x","data":' + str(n) + "}"


def lease_of(who: Member) -> str:
    return "lease-" + who.peer


async def joined(node: Node, room: str = "r", *, resumable: bool = False) -> tuple[Member, RecordingSink]:
    """A member joined as a session joins: its buffer before the join, its sink after the welcome."""
    backends = node.backends
    who = member(backends.directory, room, resumable=resumable)
    backends.deliveries.expect(who.peer)
    if resumable:
        backends.replay.start(who.peer)
    await backends.directory.join(who, lease_of(who) if resumable else None)
    sink = RecordingSink()
    backends.deliveries.attach(who.peer, sink)
    return who, sink


class DirectoryContract:
    @pytest.fixture
    async def node(self, backend: Backend) -> AsyncIterator[Node]:
        yield await backend(max_peers_per_room=3, max_rooms=2)

    async def test_join_lists_who_was_there_in_join_order(self, node: Node) -> None:
        directory = node.backends.directory
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
        directory = node.backends.directory
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

    async def test_a_join_may_bring_its_rooms_own_peer_limit(self, node: Node) -> None:
        """Another protocol's rooms (y-webrtc's topics) have a peer limit of their own; the room count is shared."""
        directory = node.backends.directory
        for _ in range(5):
            await directory.join(member(directory, "topic"), max_peers=5)
        with pytest.raises(SignalingError) as full:
            await directory.join(member(directory, "topic"), max_peers=5)
        assert full.value.code is ErrorCode.ROOM_FULL and "5 peers" in full.value.message
        with pytest.raises(SignalingError):
            await directory.join(member(directory, "topic"))  # the room's own 3
        await directory.join(member(directory, "native"))
        with pytest.raises(SignalingError) as no_room:
            await directory.join(member(directory, "other"), max_peers=5)
        assert "limit of 2 rooms" in no_room.value.message

    async def test_a_join_under_an_id_in_use_is_refused_and_changes_nothing(self, backend: Backend) -> None:
        here = (await backend(max_peers_per_room=1)).backends.directory
        there = (await backend(max_peers_per_room=1)).backends.directory
        a = member(here, name="a")
        await here.join(a, "lease-a")
        for directory, room in ((here, "r"), (there, "r"), (there, "elsewhere")):
            # The id is checked before the limits: the full room "r" still answers "taken".
            with pytest.raises(PeerTaken):
                await directory.join(Member(a.peer, room, "b", None, directory.node, False), "lease-b")
        assert [m.name for m in (await there.roster("r")).members] == ["a"]
        assert (await there.roster("elsewhere")).members == []
        assert await there.claim("lease-b", "x", NOW) is None
        gone = await here.leave(a.peer, "lease-a")
        assert gone is not None and gone.member.name == "a"
        await there.join(Member(a.peer, "r", "b", None, there.node, False))  # free again

    async def test_a_join_may_carry_its_room_limit_and_list_no_one(self, node: Node) -> None:
        directory = node.backends.directory
        for i in range(5):
            assert await directory.join(member(directory, "big"), max_peers=5, listed=i == 0) == []
        assert len(directory.members("big")) == 5  # the view is whole all the same
        with pytest.raises(SignalingError) as full:
            await directory.join(member(directory, "big"), max_peers=5)
        assert full.value.code is ErrorCode.ROOM_FULL and "5 peers" in full.value.message
        with pytest.raises(SignalingError):  # the node's own limit (3) for a join without one
            await directory.join(member(directory, "big"))

    async def test_leave_tells_who_is_left_and_an_empty_room_goes(self, node: Node) -> None:
        directory = node.backends.directory
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

    async def test_rooms_and_rosters_are_read_from_every_node(self, backend: Backend) -> None:
        here, there = (await backend()).backends.directory, (await backend()).backends.directory
        a, b = member(here, "b-room", name="a"), member(there, "b-room", resumable=True)
        await here.join(a)
        await there.join(b, lease_of(b))
        await there.join(member(there, "a-room"))
        await there.release(b.peer, lease_of(b), NOW + 60)  # a ghost is still in its room
        for directory in (here, there):
            assert await directory.rooms("", 10) == [RoomSummary("a-room", 1, 2), RoomSummary("b-room", 2, 3)]
            assert await directory.rooms("", 1) == [RoomSummary("a-room", 1, 2)]
            assert await directory.rooms("a-room", 10) == [RoomSummary("b-room", 2, 3)]
            roster = await directory.roster("b-room")
            assert [(m.peer, m.name) for m in roster.members] == [(a.peer, "a"), (b.peer, None)]
            assert roster.seq == 3  # started, two joins
            assert await directory.roster("nowhere") == Roster([], 0)

    async def test_a_lease_is_claimed_once_and_rotates(self, node: Node) -> None:
        directory = node.backends.directory
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
        directory = node.backends.directory
        a = member(directory, resumable=True)
        await directory.join(a, "lease-1")
        claimed = await directory.claim("lease-1", "lease-2", NOW)  # a takeover
        assert claimed is not None and claimed[1] == directory.node

    async def test_an_undone_claim_gives_the_lease_back_to_the_old_token(self, node: Node) -> None:
        directory = node.backends.directory
        a = member(directory, resumable=True)
        await directory.join(a, "lease-1")
        await directory.release(a.peer, "lease-1", NOW + 30)
        assert await directory.claim("lease-1", "lease-2", NOW) is not None
        await directory.unclaim(a.peer, "lease-2", "lease-1", NOW + 30)
        assert await directory.claim("lease-2", "lease-3", NOW) is None  # the token the client never got is dead
        claimed = await directory.claim("lease-1", "lease-3", NOW)  # the one it has works again
        assert claimed is not None and claimed[1] == ""  # in its grace meanwhile: connected nowhere
        # An unclaim that comes too late (the lease moved on) changes nothing.
        await directory.unclaim(a.peer, "lease-2", "lease-1", NOW + 30)
        assert await directory.claim("lease-1", "lease-4", NOW) is None
        assert await directory.expired(NOW + 31) == []  # not in a grace: its connection is here

    async def test_an_undone_claim_runs_out_like_a_grace(self, node: Node) -> None:
        directory = node.backends.directory
        a, b = member(directory, resumable=True), member(directory)
        await directory.join(a, "lease-1")
        await directory.join(b)
        assert await directory.claim("lease-1", "lease-2", NOW) is not None
        await directory.unclaim(a.peer, "lease-2", "lease-1", NOW + 30)
        ended = await directory.expired(NOW + 31)
        assert [(g.member.peer, [m.peer for m in g.others]) for g in ended] == [(a.peer, [b.peer])]

    async def test_grace_runs_out_once(self, node: Node) -> None:
        directory = node.backends.directory
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

    async def test_ghosts_past_an_address_budget_end_oldest_first(self, backend: Backend) -> None:
        """Ghosts (sessions in their grace) are charged to the address that left them: past its budget the
        oldest end at once, and are handed back to be announced; a resumed one is no longer charged."""
        node = await backend(max_ghosts_per_address=2)
        directory = node.backends.directory
        watcher = member(directory)
        await directory.join(watcher)
        ghosts = [member(directory, resumable=True) for _ in range(4)]
        for n, ghost in enumerate(ghosts):
            await directory.join(ghost, f"lease-{n}")
        assert await directory.release(ghosts[0].peer, "lease-0", NOW + 30, "192.0.2.1") == []
        assert await directory.release(ghosts[1].peer, "lease-1", NOW + 31, "192.0.2.1") == []
        ended = await directory.release(ghosts[2].peer, "lease-2", NOW + 32, "192.0.2.1")
        assert [(g.member.peer, {m.peer for m in g.others}) for g in ended] == [
            (ghosts[0].peer, {watcher.peer, ghosts[1].peer, ghosts[2].peer, ghosts[3].peer})
        ]
        assert await directory.claim("lease-0", "lease-0b", NOW) is None  # ended: its token is dead
        assert ghosts[0].peer not in directory.members("r")
        # A resumed session is no longer a ghost: the address has room for one more.
        assert await directory.claim("lease-1", "lease-1b", NOW) is not None
        assert await directory.release(ghosts[3].peer, "lease-3", NOW + 33, "192.0.2.1") == []
        # Another address has its own budget; an unknown one only the node's.
        assert await directory.release(watcher.peer, "none", NOW + 33, "192.0.2.2") == []
        assert [m.peer for m in directory.members("r").values()] == [watcher.peer] + [g.peer for g in ghosts[1:]]
        assert await directory.expired(NOW + 40) != []  # they still run out as graces do

    async def test_ghosts_past_the_node_budget_end_oldest_first(self, backend: Backend) -> None:
        node = await backend(max_ghosts=2, max_ghosts_per_address=10)
        directory = node.backends.directory
        ghosts = [member(directory, f"room{n}", resumable=True) for n in range(3)]
        for n, ghost in enumerate(ghosts):
            await directory.join(ghost, f"lease-{n}")
            await directory.release(ghost.peer, f"lease-{n}", NOW + 30 + n, f"198.51.100.{n}")
        # The third ghost, from a third address, pushed out the node's oldest: its room is gone with it.
        await node.settle()
        assert directory.stats().rooms == 2
        assert await directory.claim("lease-0", "x", NOW) is None
        assert await directory.claim("lease-1", "y", NOW) is not None

    async def test_peer_ids_are_unguessable_and_distinct(self, node: Node) -> None:
        ids = {node.backends.directory.new_peer_id() for _ in range(200)}
        assert len(ids) == 200 and all(len(peer) >= 16 for peer in ids)


class DeliveryContract:
    @pytest.fixture
    async def node(self, backend: Backend) -> AsyncIterator[Node]:
        yield await backend()

    @pytest.fixture
    async def other(self, backend: Backend) -> AsyncIterator[Node]:
        """Another process of the same deployment (the same one when there is only ever one)."""
        yield await backend()

    async def test_a_plain_member_gets_the_text_as_is(self, node: Node) -> None:
        who, sink = await joined(node)
        for n in range(3):
            node.backends.router.send(who, text(n))
        assert [m["data"] for m in await sink.received(3)] == [0, 1, 2]
        assert "seq" not in sink.texts

    async def test_a_resumable_member_gets_numbered_texts_that_are_kept(self, node: Node) -> None:
        backends = node.backends
        who, sink = await joined(node, resumable=True)
        for n in range(3):
            backends.router.send(who, text(n))
        assert [(m["data"], m["seq"]) for m in await sink.received(3)] == [(0, 1), (1, 2), (2, 3)]
        kept = await backends.replay.after(who.peer, 1)
        assert kept == [text(1)[:-1] + ',"seq":2}', text(2)[:-1] + ',"seq":3}']
        assert await backends.replay.after(who.peer, 4) is None  # beyond the last sent
        await backends.directory.leave(who.peer)  # as a session ends: leave, then forget
        backends.replay.forget(who.peer)
        assert await backends.replay.after(who.peer, 0) is None

    async def test_resume_replays_then_goes_live_in_order(self, node: Node) -> None:
        backends = node.backends
        who, old = await joined(node, resumable=True)
        backends.router.send(who, text(0))
        await old.received(1)
        backends.deliveries.detach(who.peer, old)
        for n in (1, 2):
            backends.router.send(who, text(n))  # kept while away
        backends.deliveries.expect(who.peer, 0)
        replay = await backends.replay.after(who.peer, 0)
        assert replay is not None
        new = RecordingSink()
        assert backends.deliveries.attach(who.peer, new, [WELCOME], replay)
        backends.router.send(who, text(3))
        got = await new.received(5)
        assert [m.get("seq") for m in got] == [None, 1, 2, 3, 4]
        assert old.texts == []

    @pytest.mark.parametrize("resumable", [False, True])
    async def test_a_removed_member_is_closed_where_it_is_and_the_others_told(
        self, node: Node, other: Node, resumable: bool
    ) -> None:
        who, sink = await joined(node, resumable=resumable)
        bob, bob_sink = await joined(other)
        assert not await other.backends.remove("elsewhere", who.peer)
        assert await other.backends.remove("r", who.peer)  # asked on any process
        await sink.until_removed()
        (left,) = await bob_sink.received(1)
        assert (left["type"], left["peer"]) == ("peer-left", who.peer)
        assert not await node.backends.remove("r", who.peer)
        assert [m.peer for m in (await node.backends.directory.roster("r")).members] == [bob.peer]
        if resumable:  # its session is over: no resume
            assert await node.backends.directory.claim(lease_of(who), "new", NOW) is None
        assert not bob_sink.was_removed

    async def test_a_removal_from_a_foreign_room_is_not_announced(self, node: Node, other: Node) -> None:
        who, sink = await joined(node, "key.k")
        bob, bob_sink = await joined(other, "key.k")
        assert await other.backends.remove("key.k", who.peer)
        await sink.until_removed()
        other.backends.router.send(bob, text(1))  # after where the peer-left would have been sent
        (got,) = await bob_sink.received(1)  # the peer-left would have come before it: it never did
        assert got["data"] == 1

    async def test_a_broadcast_reaches_each_member_once_in_order(self, node: Node, other: Node) -> None:
        """One text for a whole room, members plain and resumable, here and on another process: each gets it
        once, numbered if resumable, in the order sent."""
        sender, _ = await joined(node)
        here = [await joined(node, resumable=r) for r in (False, True)]
        there = [await joined(other, resumable=r) for r in (False, True, True)]
        members = node.backends.directory.members("r")
        await wait_until(lambda: len(members) == 6, timeout=STEP)  # the other process's joins reach this one's view
        for n in range(5):
            node.backends.router.send_all(members.values(), sender.peer, text(n))
        for who, sink in here + there:
            got = await sink.received(5)
            expected = [{"type": "message", "from": "x", "data": n} for n in range(5)]
            if who.resumable:
                expected = [{**e, "seq": n + 1} for n, e in enumerate(expected)]
            assert got == expected

    async def test_resume_past_what_is_kept_is_refused(self, backend: Backend) -> None:
        node = await backend(kept_count=2)
        backends = node.backends
        who, sink = await joined(node, resumable=True)
        for n in range(4):
            backends.router.send(who, text(n))
        await sink.received(4)
        assert await backends.replay.after(who.peer, 1) is None  # 3 and 4 kept: 2 is gone
        assert await backends.replay.after(who.peer, 2) == [text(2)[:-1] + ',"seq":3}', text(3)[:-1] + ',"seq":4}']

    # ------------------------------------------------------------------ the delivery rules

    async def test_a_text_both_replayed_and_live_is_delivered_once(self, node: Node) -> None:
        """None twice: the live copy of a numbered text that the replay carried too arrives after the replay."""
        backends = node.backends
        who, old = await joined(node, resumable=True)
        for n in range(3):
            backends.router.send(who, text(n))
        await old.received(3)
        backends.deliveries.detach(who.peer, old)
        await backends.directory.release(who.peer, lease_of(who), NOW + 30)
        for n in (3, 4):
            backends.router.send(who, text(n))  # seq 4 and 5, kept while away
        claimed = await backends.directory.claim(lease_of(who), "lease-2", NOW)
        assert claimed is not None
        resumed = claimed[0]
        new = RecordingSink()
        async with node.holding_deliveries():
            backends.deliveries.expect(who.peer, 3)  # the client handled up to seq 3
            backends.router.send(resumed, text(5))  # seq 6: kept, and sent live to this node (held here)
            replay = await backends.replay.after(who.peer, 3)
            assert replay is not None and len(replay) == 3  # 4, 5 and 6
            assert backends.deliveries.attach(who.peer, new, [WELCOME], replay)
        await node.settle_deliveries()  # the live copy of seq 6 has arrived by now
        got = await new.received(4)
        assert [(m.get("data"), m.get("seq")) for m in got] == [(None, None), (3, 4), (4, 5), (5, 6)]
        backends.router.send(resumed, text(6))
        assert [m["seq"] for m in await new.received(1)] == [7]

    @pytest.mark.parametrize("resumable", [False, True], ids=["plain", "resumable"])
    async def test_texts_for_a_newcomer_wait_for_its_welcome(self, node: Node, other: Node, resumable: bool) -> None:
        """None lost: what is sent to a newcomer as soon as its join is visible waits for its sink."""
        await joined(other)  # a peer of the room, on the other process
        backends = node.backends
        newcomer = member(backends.directory, resumable=resumable)
        backends.deliveries.expect(newcomer.peer)
        if resumable:
            backends.replay.start(newcomer.peer)
        await backends.directory.join(newcomer, lease_of(newcomer) if resumable else None)
        members = other.backends.directory.members("r")
        await wait_until(lambda: newcomer.peer in members, timeout=STEP, message="the join never became visible")
        for n in range(3):
            other.backends.router.send(members[newcomer.peer], text(n))
        await node.settle_deliveries()  # they arrived, before the newcomer's sink
        sink = RecordingSink()
        assert backends.deliveries.attach(newcomer.peer, sink, [WELCOME])
        got = await sink.received(4)
        assert [m.get("data") for m in got] == [None, 0, 1, 2]
        assert [m.get("seq") for m in got] == ([None, 1, 2, 3] if resumable else [None] * 4)

    async def test_a_join_that_fails_leaves_no_buffer(self, backend: Backend) -> None:
        node = await backend(max_peers_per_room=1)
        await joined(node)
        backends = node.backends
        late = member(backends.directory)
        backends.deliveries.expect(late.peer)
        with pytest.raises(SignalingError):
            await backends.directory.join(late)
        backends.deliveries.cancel(late.peer)
        assert late.peer not in backends.deliveries.sinks

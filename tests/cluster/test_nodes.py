"""Several nodes on one real redis-server, in the test's process: shared rooms, limits, relay, takeover, resume,
and a node's life when Redis goes away and comes back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from signaling.cluster.node import ClusterNode
from signaling.protocol.errors import ErrorCode, SignalingError
from tests.cluster.nodes import Nodes
from tests.helpers.ports import free_port
from tests.helpers.redis import READY, redis_argv
from tests.helpers.server_process import async_running_process
from tests.helpers.sinks import RecordingSink
from tests.helpers.wait import wait_until
from tests.rooms.contract import NOW, WELCOME, joined, member, text

STEP = 5.0


async def test_members_on_two_nodes_see_each_other(nodes: Nodes) -> None:
    a_node, b_node = await nodes.start(), await nodes.start()
    a, _ = await joined(a_node)
    b = member(b_node.directory)
    already = await b_node.directory.join(b)
    assert [(m.peer, m.node) for m in already] == [(a.peer, a_node.node)]
    assert list(b_node.directory.members("r")) == [a.peer, b.peer]
    # Node A learns of b from the published change, before anything b's node sends through Redis.
    await wait_until(lambda: b.peer in a_node.directory.members("r"), timeout=STEP)
    assert a_node.directory.members("r")[b.peer].node == b_node.node
    gone = await b_node.directory.leave(b.peer)
    assert gone is not None and [m.peer for m in gone.others] == [a.peer]
    await wait_until(lambda: list(a_node.directory.members("r")) == [a.peer], timeout=STEP)


async def test_the_room_limit_holds_when_two_nodes_race_for_the_last_places(nodes: Nodes) -> None:
    a_node = await nodes.start(max_peers_per_room=5)
    b_node = await nodes.start(max_peers_per_room=5)

    async def attempt(node: ClusterNode) -> bool:
        try:
            await node.directory.join(member(node.directory))
        except SignalingError as exc:
            assert exc.code is ErrorCode.ROOM_FULL
            return False
        return True

    results = await asyncio.gather(*(attempt(node) for _ in range(10) for node in (a_node, b_node)))
    assert sum(results) == 5
    await a_node.settle()
    assert (a_node.directory.stats().rooms, a_node.directory.stats().peers) == (1, 5)


@pytest.mark.parametrize("resumable", [False, True])
async def test_texts_cross_nodes_in_order_each_once(nodes: Nodes, resumable: bool) -> None:
    a_node, b_node = await nodes.start(), await nodes.start()
    await joined(a_node)
    b, b_sink = await joined(b_node, resumable=resumable)
    await wait_until(lambda: b.peer in a_node.directory.members("r"), timeout=STEP)
    target = a_node.directory.members("r")[b.peer]
    for n in range(500):
        a_node.router.send(target, text(n))
    got = await b_sink.received(500)
    assert [m["data"] for m in got] == list(range(500))
    assert [m.get("seq") for m in got] == (list(range(1, 501)) if resumable else [None] * 500)


async def test_a_session_resumed_on_another_node_closes_the_old_connection_and_replays(nodes: Nodes) -> None:
    a_node, b_node = await nodes.start(), await nodes.start()
    alice, old = await joined(a_node, resumable=True)
    await joined(b_node)
    await wait_until(lambda: alice.peer in b_node.directory.members("r"), timeout=STEP)
    to_alice = b_node.directory.members("r")[alice.peer]
    for n in range(3):
        b_node.router.send(to_alice, text(n))
    assert [m["seq"] for m in await old.received(3)] == [1, 2, 3]
    # Alice's client saw only seq 1, and comes back through node B while her old connection is still open.
    claimed = await b_node.directory.claim("lease-" + alice.peer, "lease-2", NOW)
    assert claimed is not None
    again, previous = claimed
    assert (again.peer, again.node, previous) == (alice.peer, b_node.node, a_node.node)
    b_node.backends.deliveries.expect(alice.peer, 1)
    replay = await b_node.replay.after(alice.peer, 1)
    b_node.router.take_over(alice.peer, previous)
    await old.until_taken_over()
    new = RecordingSink()
    assert b_node.backends.deliveries.attach(alice.peer, new, [WELCOME], replay or [])
    b_node.router.send(to_alice, text(3))
    assert [(m.get("data"), m.get("seq")) for m in await new.received(4)] == [
        (None, None),
        (1, 2),
        (2, 3),
        (3, 4),
    ]
    # Node A no longer counts her as its own.
    await wait_until(lambda: a_node.directory.stats().local_peers == 0, timeout=STEP)
    assert b_node.directory.stats().local_peers == 2


async def test_a_stopping_node_hands_its_resumable_sessions_a_grace(nodes: Nodes) -> None:
    a_node, b_node = await nodes.start(), await nodes.start()
    plain, _ = await joined(a_node)
    kept, _ = await joined(a_node, resumable=True)
    bob, bob_sink = await joined(b_node)
    await a_node.stop()  # its plain member leaves at once; the resumable one may resume elsewhere
    assert (await bob_sink.received(1))[0] == {"type": "peer-left", "peer": plain.peer}
    claimed = await b_node.directory.claim("lease-" + kept.peer, "lease-2", time.time())  # its grace: real time
    assert claimed is not None and claimed[1] == ""
    assert list(b_node.directory.members("r")) == [kept.peer, bob.peer]


async def test_a_node_that_stops_beating_is_swept_within_its_ttl(nodes: Nodes) -> None:
    a_node = await nodes.start(node_ttl=1.0, grace=0)
    b_node = await nodes.start()
    gone, _ = await joined(a_node)
    bob, _ = await joined(b_node)
    heartbeat = a_node._heartbeat  # as if SIGKILLed: no more heartbeats, no goodbye (tests/app kills a process)
    assert heartbeat is not None
    heartbeat.cancel()
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def swept() -> bool:
        return [d.member.peer for d in await b_node.directory.expired(NOW)] == [gone.peer]

    await wait_until(swept, timeout=STEP, interval=0.1)
    assert loop.time() - started < 1.0 + 0.5
    assert list(b_node.directory.members("r")) == [bob.peer]


async def test_losing_redis_makes_the_node_unavailable_until_it_comes_back(nodes: Nodes, tmp_path: Path) -> None:
    async with async_running_process(redis_argv(tmp_path), name="redis-lost", ready_log=READY) as redis:
        nodes.url = f"redis://127.0.0.1:{redis.port}/0"
        node = await nodes.start()
        first_id = node.node
        await joined(node)
        await redis.stop_async()
        await wait_until(lambda: bool(nodes.lost[node]), timeout=STEP)
        assert node.down_reason is not None
        with pytest.raises(SignalingError) as refused:
            await node.directory.join(member(node.directory))
        assert refused.value.code is ErrorCode.UNAVAILABLE
        port = redis.port
    async with async_running_process(redis_argv(tmp_path), name="redis-back", port=port, ready_log=READY):
        await asyncio.wait_for(nodes.restored[node].wait(), STEP)
        assert node.up and node.node != first_id  # a new id: the old one's leftovers are swept as a dead node's
        await joined(node)
        await node.stop()


async def test_a_node_started_before_redis_is_unavailable_until_redis_answers(nodes: Nodes, tmp_path: Path) -> None:
    port = free_port()
    nodes.url = f"redis://127.0.0.1:{port}/0"
    node = await nodes.start()
    assert node.down_reason is not None and node.node == ""
    with pytest.raises(SignalingError) as refused:
        await node.directory.join(member(node.directory))
    assert refused.value.code is ErrorCode.UNAVAILABLE
    async with async_running_process(redis_argv(tmp_path), name="redis-late", port=port, ready_log=READY):
        await asyncio.wait_for(nodes.restored[node].wait(), STEP)
        await joined(node)
        await node.stop()

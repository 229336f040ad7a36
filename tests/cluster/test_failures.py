"""When Redis refuses a step or comes to it late: what a session did is undone, work a node gave up on is refused,
and what must still happen happens later. Sessions, their driver and a node in the test's process, each test
with a redis-server of its own (the tests make it refuse writes, or stop it)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from tests.cluster.nodes import Nodes, TestNode
from tests.cluster.sessions import GRACE, Client
from tests.helpers.server_process import ServerProcess
from tests.helpers.wait import wait_until

STEP = 10.0


@pytest.fixture
async def nodes(own_redis: ServerProcess) -> AsyncIterator[Nodes]:
    started = Nodes(f"redis://127.0.0.1:{own_redis.port}/0", "failures")
    yield started
    await started.stop()


async def a_dropped_session(node: TestNode) -> tuple[str, str, Client]:
    """A resumable session in its grace period, and a peer in its room who watches: (token, peer id, watcher)."""
    alice = Client(node)
    welcome = await alice.join(resumable=True)
    watcher = Client(node)
    await watcher.join()
    alice.sink.take()
    await alice.drop()
    return welcome["resume"], welcome["peer"], watcher


def refusing_writes_before(admin: redis.Redis, step: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``step``, with Redis refusing every write from just before it (out of memory): an error reply, not an outage."""

    async def refused(*args: Any) -> Any:
        await admin.config_set("maxmemory", 1)
        return await step(*args)

    return refused


async def test_an_error_reply_after_the_claim_undoes_it_and_the_client_may_try_again(
    nodes: Nodes, admin: redis.Redis
) -> None:
    node = await nodes.start(grace=GRACE)
    token, peer, watcher = await a_dropped_session(node)
    replay = node.replay
    replay.after = refusing_writes_before(admin, replay.after)  # type: ignore[method-assign]
    bob = Client(node)
    replies = await bob.send(type="join", room="r", resume=token, last_seq=0, id=7)
    assert [(m["type"], m.get("code"), m.get("ref")) for m in replies] == [("error", "unavailable", 7)]
    assert bob.sink.failed_steps == 0 and not bob.session.joined  # an answer, not a 1011; no ghost here
    del replay.after
    await admin.config_set("maxmemory", 0)
    await node.backends.end_expired(time.time())  # the sweep finishes the undo Redis refused meanwhile
    again = Client(node)
    welcome = await again.join(resume=token, last_seq=0)
    assert (welcome["resumed"], welcome["peer"]) == (True, peer)  # the token the client kept works
    assert watcher.sink.take() == []  # the others never saw it leave


async def test_a_claim_redis_reaches_after_the_node_gave_up_is_refused(nodes: Nodes, own_redis: ServerProcess) -> None:
    node = await nodes.start(grace=GRACE, timeout=1.0)
    token, peer, _ = await a_dropped_session(node)
    bob = Client(node)
    own_redis.proc.send_signal(signal.SIGSTOP)  # Redis stops reading: the claim waits in its input
    try:
        bob.driver.feed(json.dumps({"type": "join", "room": "r", "resume": token, "last_seq": 0, "id": 7}))
        await wait_until(lambda: bool(nodes.lost[node]), timeout=STEP, message="the node never gave up")
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)  # and now it runs what waited: too late
    await asyncio.gather(*bob.steps)
    assert [(m["type"], m.get("code")) for m in bob.sink.take()] == [("error", "unavailable")]
    await asyncio.wait_for(nodes.restored[node].wait(), STEP)
    again = Client(node)
    welcome = await again.join(resume=token, last_seq=0)
    assert (welcome["resumed"], welcome["peer"]) == (True, peer)  # the stale claim did not rotate the token


async def test_a_leave_redis_refuses_happens_later_and_the_others_are_told(nodes: Nodes, admin: redis.Redis) -> None:
    node = await nodes.start(grace=GRACE)
    alice, bob = Client(node), Client(node)
    peer = (await alice.join())["peer"]
    await bob.join()
    alice.sink.take()
    bob.sink.take()
    await admin.config_set("maxmemory", 1)
    assert await alice.send(type="leave") == []
    assert not alice.session.joined and bob.sink.take() == []  # not yet: Redis refused it
    await admin.config_set("maxmemory", 0)
    await node.backends.end_expired(time.time())
    assert bob.sink.take() == [{"type": "peer-left", "peer": peer}]
    assert list(node.directory.members("r")) == [bob.session.peer]

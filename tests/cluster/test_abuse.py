"""Cluster mode under attack, in the room layer: what one client can make Redis carry and keep.

Sessions on in-process nodes (tests/cluster/sessions.py), each test with a redis-server of its own: a broadcast
crosses Redis once per node, whatever the room's size; a message Redis refuses (out of memory) is counted and its
sender told; every key Redis holds expires unless a node keeps it; a victim resumes whatever bad tokens its
address sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from tests.cluster.nodes import Nodes
from tests.cluster.sessions import Client
from tests.helpers.server_process import ServerProcess
from tests.helpers.wait import wait_until

STEP = 10.0
PREFIX = "abuse"


@pytest.fixture
async def nodes(own_redis: ServerProcess) -> AsyncIterator[Nodes]:
    started = Nodes(f"redis://127.0.0.1:{own_redis.port}/0", PREFIX)
    yield started
    await started.stop()


async def test_a_broadcast_crosses_redis_once_per_node(nodes: Nodes) -> None:
    """The red-team's amplification: one 60 KB broadcast into a room whose 7 other members are on another node
    was 7 copies in Redis's output buffer for that node. Now it is one record naming them, plain or resumable."""
    one, two = await nodes.start(), await nodes.start()
    payloads: list[str] = []
    handle = two.on_delivery

    def record(payload: str) -> None:
        payloads.append(payload)
        handle(payload)

    two.on_delivery = record
    sender = Client(one)
    await sender.join()
    receivers = [Client(two) for _ in range(7)]
    for n, receiver in enumerate(receivers):
        await receiver.join(resumable=n % 2 == 0)
    await sender.sink.received(7)  # peer-joined, each
    await two.settle_deliveries()
    for receiver in receivers:
        receiver.sink.take()
    payloads.clear()
    data = "x" * 60_000
    assert await sender.send(type="message", data=data) == []
    for receiver in receivers:
        (got,) = await receiver.sink.received(1)
        assert got["data"] == data and ("seq" in got) is (receiver in receivers[::2])
    assert sum(map(len, payloads)) < 2 * len(data) + 1000  # a plain record and a numbered one, not seven copies


async def test_a_message_redis_refuses_is_counted_and_its_sender_told(nodes: Nodes, admin: redis.Redis) -> None:
    """At Redis's maxmemory (noeviction) a text for a resumable peer cannot be kept: not silent, an ``error``
    to its sender and a count for /metrics; the connection lives on."""
    one, two = await nodes.start(), await nodes.start()
    alice, bob = Client(one), Client(two)
    await alice.join(resumable=True)
    bob_peer = (await bob.join(resumable=True))["peer"]
    await wait_until(lambda: bob_peer in one.directory.members("r"), timeout=STEP)
    await alice.sink.received(1)  # peer-joined
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", "1")
    try:
        assert await alice.send(type="message", to=bob_peer, data="lost?", id=7) == []
        (error,) = await alice.sink.received(1)
    finally:
        await admin.config_set("maxmemory", "0")
    assert error["type"] == "error" and error["code"] == "unavailable" and "out of memory" in error["message"]
    assert one.router.refused == 1
    assert await alice.send(type="message", to=bob_peer, data="kept") == []  # and it goes on once Redis has room
    assert [m["data"] for m in await bob.sink.received(1)] == ["kept"]


async def test_every_key_expires_unless_a_node_keeps_it(nodes: Nodes, admin: redis.Redis) -> None:
    """Nothing stays in Redis without an owner: while the nodes run, and after the last one stopped (its
    resumable sessions in their grace), every key of the cluster has a time to live."""
    one, two = await nodes.start(), await nodes.start()
    plain, resumable, ghost = Client(one), Client(two), Client(two, address="192.0.2.7")
    await plain.join()
    await resumable.join(resumable=True)
    await ghost.join(resumable=True)
    await plain.send(type="message", data="kept for the resumable ones")
    await wait_until(lambda: resumable.sink.texts != [] and ghost.sink.texts != [], timeout=STEP)
    await ghost.drop()
    await one.settle()  # a heartbeat: the cluster-wide keys renewed

    async def without_ttl() -> list[str]:
        keys = [key async for key in admin.scan_iter(f"{PREFIX}:*")]
        assert keys
        return [key for key in keys if await admin.pttl(key) < 0]

    assert await without_ttl() == []
    await nodes.stop()
    assert await without_ttl() == []


async def test_bad_tokens_from_the_victims_address_do_not_stop_its_resume(nodes: Nodes) -> None:
    """An office NAT: a guesser on one node sends bad resume tokens from the victim's address to both nodes;
    the victim's real token resumes on either."""
    one, two = await nodes.start(), await nodes.start()
    victim, watcher = Client(one, address="203.0.113.5"), Client(two)
    token = (await victim.join(resumable=True))["resume"]
    await watcher.join()
    await victim.drop()
    for n in range(20):
        guesser = Client((one, two)[n % 2], address="203.0.113.5")
        welcome = await guesser.join(room=f"g{n}", resume=f"not-a-token-{n}", last_seq=0)
        assert welcome["resumed"] is False
        await guesser.send(type="leave")
    again = Client(two, address="203.0.113.5")
    assert (await again.join(resume=token, last_seq=0))["resumed"] is True

"""Several `signaling serve` processes on one real redis-server: one set of rooms, relay across nodes, a node
killed (SIGKILL) or drained (SIGTERM), and Redis going away and coming back."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.models import PeerJoined, PeerLeft, RelayedMessage
from signaling.ws.aio.client import connect
from signaling.ws.exceptions import ConnectionClosed
from tests.conftest import redis_url
from tests.helpers.cluster import NODE_TTL, cluster, ws
from tests.helpers.redis import READY, redis_argv
from tests.helpers.server_process import ServerProcess, async_running_process
from tests.helpers.streams import NumberedStream
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(90)

STEP = 10.0


async def http_get(node: ServerProcess, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    async with asyncio.timeout(STEP):
        raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_three_nodes_share_a_room_and_relay_in_order(redis_settings: dict[str, str]) -> None:
    async with (
        cluster(3, redis_settings) as nodes,
        SignalingClient.connect(ws(nodes[0])) as a,
        SignalingClient.connect(ws(nodes[1])) as b,
        SignalingClient.connect(ws(nodes[2])) as c,
    ):
        wa = await a.join("r", name="a")
        wb = await b.join("r", name="b")
        wc = await c.join("r", name="c")
        assert [p.name for p in wb.peers] == ["a"] and [p.name for p in wc.peers] == ["a", "b"]
        async with asyncio.timeout(STEP):
            # Announced by two different nodes: no order between them (order holds between any two peers).
            assert {(await a.expect(PeerJoined)).peer for _ in range(2)} == {wb.peer, wc.peer}
            assert (await b.expect(PeerJoined)).peer == wc.peer
        for n in range(200):
            await a.send_message({"n": n}, to=wb.peer)  # node 1 -> node 2
            await c.send_message({"c": n})  # node 3 -> everyone
        got: dict[str, list[int]] = {wa.peer: [], wc.peer: []}
        async with asyncio.timeout(STEP):
            while sum(map(len, got.values())) < 400:
                msg = await b.expect(RelayedMessage)
                got[msg.from_].append(msg.data["n" if msg.from_ == wa.peer else "c"])
            assert [(await a.expect(RelayedMessage)).data["c"] for _ in range(200)] == list(range(200))
        assert got == {wa.peer: list(range(200)), wc.peer: list(range(200))}  # in order, each once
        await a.send_message("x", to="nobody")  # and a peer on no node is still unknown
        async with asyncio.timeout(STEP):
            error = await a.recv()
        assert getattr(error, "code", None) == "unknown-peer"
        # Each node reports its own connections and the cluster's rooms and peers.
        await wait_until(
            lambda: cluster_view(nodes[0]), timeout=STEP, message="the cluster's counts did not reach node 1"
        )
        status, body = await http_get(nodes[0], "/metrics")
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
            if not sample.labels
        }
        assert status == 200 and samples["signaling_cluster_nodes"] == 3 and samples["signaling_cluster_up"] == 1
        assert (samples["signaling_peers"], samples["signaling_local_peers"]) == (3, 1)


async def cluster_view(node: ServerProcess) -> bool:
    status, body = await http_get(node, "/healthz")
    health = json.loads(body)
    cluster = health["cluster"]
    return (
        status == 200
        and (health["peers"], health["rooms"], health["local_peers"]) == (3, 1, 1)
        and (cluster["nodes"], cluster["redis"]) == (3, "up")
    )


async def test_a_killed_nodes_peers_leave_within_the_node_ttl(redis_settings: dict[str, str]) -> None:
    killable = {"ok_returncodes": (0, -signal.SIGTERM, -signal.SIGKILL), "must_stay_up": False}
    async with (
        cluster(3, redis_settings, **killable) as nodes,
        SignalingClient.connect(ws(nodes[0])) as a,
        SignalingClient.connect(ws(nodes[1]), resume=False) as b,
        SignalingClient.connect(ws(nodes[2])) as c,
    ):
        await a.join("r")
        wb = await b.join("r")
        await c.join("r")
        async with asyncio.timeout(STEP):
            await a.expect(PeerJoined)
            await a.expect(PeerJoined)
        loop = asyncio.get_running_loop()
        killed = loop.time()
        nodes[1].proc.send_signal(signal.SIGKILL)
        # The bound: the heartbeat's lifetime, plus a sweep period (1 s), plus delivery.
        async with asyncio.timeout(NODE_TTL + 2.0):
            assert (await a.expect(PeerLeft)).peer == wb.peer
            assert (await c.expect(PeerLeft)).peer == wb.peer
        print(f"peer-left {loop.time() - killed:.2f} s after SIGKILL (node ttl {NODE_TTL} s)")


async def test_a_drained_nodes_clients_resume_on_another_and_lose_nothing(redis_settings: dict[str, str]) -> None:
    async with (
        cluster(2, redis_settings, "--rate-limit", "5000", "--rate-burst", "5000") as nodes,  # a fast stream
        SignalingClient.connect([ws(nodes[0]), ws(nodes[1])]) as alice,
        SignalingClient.connect(ws(nodes[1]), resume=False) as bob,
    ):
        welcome = await alice.join("r")
        await bob.join("r")
        async with asyncio.timeout(STEP):
            await alice.expect(PeerJoined)
        # A window of 100 messages ahead of what alice got: the stream goes on through the drain, with messages in
        # flight when node 1 closes her connection, and waits while she resumes.
        stream = NumberedStream(bob, alice, welcome.peer, 1000, window=100)
        async with stream.running() as tasks:
            async with asyncio.timeout(STEP):
                await stream.until_received(200)  # well under way
            assert await nodes[0].stop_async() in (0, -signal.SIGTERM)  # SIGTERM: the drain
            async with asyncio.timeout(STEP):
                await asyncio.gather(*tasks)
        assert stream.received == list(range(1000))  # nothing lost, nothing twice, in order
        assert [(w.resumed, w.peer) for w in stream.welcomes] == [(True, welcome.peer)]
        await bob.ping()
        assert bob._queue.empty()  # bob never saw alice leave
        assert '"event": "cluster_left"' in nodes[0].log_text()  # the drained node left the cluster cleanly


async def test_losing_redis_closes_clients_and_the_node_recovers(
    redis_settings: dict[str, str], tmp_path: Path
) -> None:
    async with async_running_process(redis_argv(tmp_path), name="redis-outage", ready_log=READY) as redis:
        settings = {**redis_settings, "redis_url": redis_url(redis)}
        port = redis.port
        async with cluster(1, settings) as nodes:
            node = nodes[0]
            client = await connect(ws(node))
            await client.send(json.dumps({"type": "join", "room": "r"}))
            assert json.loads(await client.recv())["type"] == "welcome"
            await redis.stop_async()
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(STEP):
                    await client.recv()
            assert closed.value.code == 1011 and "unavailable" in closed.value.reason
            assert (await http_get(node, "/readyz"))[0] == 503
            status, body = await http_get(node, "/healthz")
            assert status == 200 and json.loads(body)["cluster"]["redis"] == "down"
            async with async_running_process(redis_argv(tmp_path), name="redis-back", port=port, ready_log=READY):

                async def ready() -> bool:
                    return (await http_get(node, "/readyz"))[0] == 200

                await wait_until(ready, timeout=STEP, interval=0.1, message="the node did not recover")
                async with SignalingClient.connect(ws(node)) as again:
                    assert (await again.join("r")).peers == []  # the old session is gone with the old Redis

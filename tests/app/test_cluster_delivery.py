"""The delivery promise across real `signaling serve` processes on one Redis: numbered messages reach a resuming
peer once, a newcomer on a busy node loses nothing sent to it before its sink was ready, and a Redis killed and
restarted mid-call costs no numbered message. Clients here are raw WebSocket ones that keep every message they
get (third-party clients do not drop duplicates), so that what the server sends is what is counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.models import PeerJoined
from signaling.ws.aio.client import ClientConnection, connect
from tests.conftest import redis_url
from tests.helpers.cluster import cluster, ws
from tests.helpers.redis import READY, redis_argv
from tests.helpers.server_process import async_running_process
from tests.helpers.streams import NumberedStream

pytestmark = pytest.mark.timeout(120)

STEP = 10.0
#: Messages a stream runs ahead of its receiver at most: well inside what a session keeps for its replay.
WINDOW = 100
#: Lifted per-connection and per-address limits: these tests reconnect and stream far above a person's pace.
FAST = (
    "--rate-limit", "100000", "--rate-burst", "100000", "--rate-limit-bytes", "1000000000",
    "--rate-burst-bytes", "1000000000", "--connection-rate-per-ip", "0", "--max-connections-per-ip", "0",
    "--frame-rate", "0",
)  # fmt: skip


async def recv(conn: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(STEP):
        message: dict[str, Any] = json.loads(await conn.recv())
    return message


async def join(url: str, **fields: Any) -> tuple[ClientConnection, dict[str, Any]]:
    conn = await connect(url)
    await conn.send(json.dumps({"type": "join", "room": "r", **fields}))
    welcome = await recv(conn)
    assert welcome["type"] == "welcome", welcome
    return conn, welcome


@contextlib.asynccontextmanager
async def streaming(
    sender: SignalingClient, to: str | None, received: Callable[[], int] | None = None
) -> AsyncIterator[None]:
    """``sender`` streams numbered messages to ``to`` (None: its whole room) while the block runs, paced by the
    server's answers; with ``received`` (what the receiver got so far), at most ``WINDOW`` ahead of it. What the
    sender is sent meanwhile (others joining and leaving) is read and dropped."""

    running = True  # besides cancelling: Python 3.11's wait_for (in ping) may swallow a cancellation

    async def ignore() -> None:
        async for _ in sender:
            pass

    async def stream() -> None:
        n = 0
        while running:
            await sender.send_message(n, to=to)
            n += 1
            if n % 20 == 0:
                await sender.ping()  # as fast as the server relays, never faster
                while running and received is not None and n - received() > WINDOW:
                    await sender.ping()

    tasks = [asyncio.create_task(ignore()), asyncio.create_task(stream())]
    try:
        yield
    finally:
        running = False
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def busy(*urls: str, pairs: int = 4) -> AsyncIterator[None]:
    """Other rooms keep the nodes busy while the block runs: plain peers streaming from each node to the next, so
    that every node's channel from Redis always has a backlog."""
    async with contextlib.AsyncExitStack() as stack:
        for n in range(pairs):
            sender_url, receiver_url = urls[n % len(urls)], urls[(n + 1) % len(urls)]
            sender = await stack.enter_async_context(SignalingClient.connect(sender_url, resume=False))
            receiver = await stack.enter_async_context(SignalingClient.connect(receiver_url, resume=False))
            await sender.join(f"busy{n}")
            welcome = await receiver.join(f"busy{n}")
            await stack.enter_async_context(streaming(receiver, None))  # reads and drops what it gets
            await stack.enter_async_context(streaming(sender, welcome.peer))
        yield


async def test_a_peer_that_resumes_again_and_again_gets_each_numbered_message_once(
    redis_settings: dict[str, str],
) -> None:
    """The replay comes on one Redis connection and the live messages on another, in no fixed order: a message in
    both reached the peer twice (3 in 250 resumes)."""
    async with (
        cluster(2, redis_settings, *FAST) as nodes,
        SignalingClient.connect(ws(nodes[1]), resume=False) as bob,
    ):
        alice, welcome = await join(ws(nodes[0]), resumable=True)
        token, peer = welcome["resume"], welcome["peer"]
        await bob.join("r")
        seqs: list[int] = []
        async with busy(ws(nodes[0]), ws(nodes[1])), streaming(bob, peer, received=lambda: len(seqs)):
            for attempt in range(200):
                for _ in range(5):  # a little of the stream on each connection
                    message = await recv(alice)
                    if "seq" in message:
                        seqs.append(message["seq"])
                alice.abort()  # dropped mid-stream, with messages in flight
                alice, welcome = await join(ws(nodes[attempt % 2]), resume=token, last_seq=seqs[-1] if seqs else 0)
                assert (welcome["resumed"], welcome["peer"]) == (True, peer)
                token = welcome["resume"]
        alice.abort()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # each once, in order, none missing


async def test_newcomers_on_a_busy_node_lose_nothing_sent_before_their_sink_was_ready(
    redis_settings: dict[str, str],
) -> None:
    """Messages sent to a newcomer as soon as its join was visible, before its node had its sink, were lost, and
    the numbered ones used up their seq (9 to 114 of 300 joiners lost seq 1-5)."""
    async with (
        cluster(2, redis_settings, *FAST) as nodes,
        SignalingClient.connect(ws(nodes[1]), resume=False) as broadcaster,
    ):
        await broadcaster.join("r")
        gaps: list[list[int]] = []
        async with busy(ws(nodes[1]), ws(nodes[0])), streaming(broadcaster, None):
            for _ in range(150):
                newcomer, _ = await join(ws(nodes[0]), resumable=True)
                first: list[int] = []
                while len(first) < 5:
                    message = await recv(newcomer)
                    if "seq" in message:
                        first.append(message["seq"])
                if first != [1, 2, 3, 4, 5]:
                    gaps.append(first)
                await newcomer.send(json.dumps({"type": "leave"}))
                await newcomer.close()
    assert gaps == []


async def test_redis_killed_and_restarted_mid_call_loses_no_numbered_message(
    redis_settings: dict[str, str], tmp_path: Path
) -> None:
    """A Redis that keeps what it acknowledged (appendfsync always) is SIGKILLed and restarted under a numbered
    stream: the nodes close their clients, both sides resume, and the stream arrives whole, in order, once (37 to
    43 of 560 were lost: what the sender's node had taken but Redis had not run; and under uvloop a node could
    stay unlinked for good)."""
    durable = [*redis_argv(tmp_path), "--appendonly", "yes", "--appendfsync", "always"]
    async with async_running_process(
        durable, name="redis-durable", ready_log=READY, ok_returncodes=(0, -signal.SIGKILL), must_stay_up=False
    ) as redis:
        port = redis.port
        settings = {**redis_settings, "redis_url": redis_url(redis)}
        async with (
            cluster(2, settings, *FAST) as nodes,
            SignalingClient.connect([ws(nodes[0]), ws(nodes[1])]) as alice,
            SignalingClient.connect([ws(nodes[1]), ws(nodes[0])]) as bob,
        ):
            welcome = await alice.join("r")
            await bob.join("r")
            async with asyncio.timeout(STEP):
                await alice.expect(PeerJoined)
            stream = NumberedStream(bob, alice, welcome.peer, 560, window=50)  # in flight through the outage too
            async with stream.running() as tasks:
                async with asyncio.timeout(STEP):
                    await stream.until_received(200)
                redis.proc.send_signal(signal.SIGKILL)
                await redis.stop_async()
                async with async_running_process(durable, name="redis-restarted", port=port, ready_log=READY):
                    async with asyncio.timeout(3 * STEP):
                        await asyncio.gather(*tasks)
            assert stream.received == list(range(560))  # nothing lost, nothing twice, in order
            assert [(w.resumed, w.peer) for w in stream.welcomes] == [(True, welcome.peer)]

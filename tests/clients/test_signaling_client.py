"""SignalingClient against the real signaling server (in-process, real sockets): join, errors, typed relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest

from signaling import protocol
from signaling.clients.signaling_client import SignalingClient, SignalingErrorReply, UnexpectedMessage
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.exceptions import ConnectionClosed
from tests.helpers.wait import wait_until

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
ClientFactory = Callable[[], Awaitable[SignalingClient]]

STEP = 5.0  # seconds any single expected message may take on loopback


def ws_url(server: WebSocketServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


@pytest.fixture
async def connect(signaling_server: WebSocketServer) -> AsyncIterator[ClientFactory]:
    """``await connect()``: a SignalingClient to the in-process server, closed at the end of the test."""
    async with AsyncExitStack() as stack:

        async def make() -> SignalingClient:
            return await stack.enter_async_context(SignalingClient.connect(ws_url(signaling_server)))

        yield make


async def joined_pair(connect: ClientFactory, room: str = "r") -> tuple[SignalingClient, SignalingClient]:
    """Two clients in ``room``; ``a``'s peer-joined for ``b`` already consumed."""
    a, b = await connect(), await connect()
    await a.join(room, name="a")
    await b.join(room, name="b")
    async with asyncio.timeout(STEP):
        joined = await a.expect(protocol.PeerJoined)
    assert joined.peer == b.peer_id
    return a, b


async def test_join_returns_typed_welcome_and_others_get_peer_joined(connect: ClientFactory) -> None:
    a, b = await connect(), await connect()
    wa = await a.join("room-1", name="alice", meta={"role": "host"})
    assert isinstance(wa, protocol.Welcome)
    assert wa.room == "room-1" and wa.peers == [] and wa.iceServers == []
    assert wa.ref is not None  # join() correlates with id/ref
    assert a.peer_id == wa.peer and a.welcome is wa

    wb = await b.join("room-1")
    assert wb.peers == [protocol.PeerInfo(peer=wa.peer, name="alice", meta={"role": "host"})]
    assert wb.peer != wa.peer
    async with asyncio.timeout(STEP):
        joined = await a.expect(protocol.PeerJoined)
    assert (joined.peer, joined.name, joined.meta) == (wb.peer, None, None)


async def test_welcome_carries_the_configured_ice_servers(start_signaling: ServerFactory) -> None:
    servers = [{"urls": "stun:127.0.0.1:3478"}, {"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"}]
    server = await start_signaling(ice_servers=servers)
    async with SignalingClient.connect(ws_url(server)) as client:
        welcome = await client.join("r")
    assert [s.model_dump(exclude_none=True) for s in welcome.iceServers] == servers
    assert client.ice_servers == welcome.iceServers


async def test_join_error_raises_with_code_and_ref(connect: ClientFactory) -> None:
    client = await connect()
    with pytest.raises(SignalingErrorReply) as bad_room:
        await client.join("no spaces allowed")
    assert bad_room.value.code == "invalid-message"
    assert "room" in bad_room.value.message
    assert bad_room.value.ref is not None
    assert client.welcome is None

    await client.join("ok")  # the connection stays usable after an error
    with pytest.raises(SignalingErrorReply) as again:
        await client.join("ok")
    assert again.value.code == "already-joined"
    assert str(again.value).startswith("already-joined: ")


async def test_room_full_raises(start_signaling: ServerFactory) -> None:
    server = await start_signaling(room_max_peers=1)
    async with SignalingClient.connect(ws_url(server)) as first, SignalingClient.connect(ws_url(server)) as second:
        await first.join("small")
        with pytest.raises(SignalingErrorReply) as exc:
            await second.join("small")
        assert exc.value.code == "room-full"
        await second.join("other")  # still open, may join elsewhere


async def test_relay_between_two_clients_is_typed(connect: ClientFactory) -> None:
    a, b = await joined_pair(connect)
    assert a.peer_id is not None and b.peer_id is not None
    candidate = {
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }

    await a.send_offer(b.peer_id, "v=0 offer")
    await a.send_candidate(b.peer_id, candidate)
    await a.send_candidate(b.peer_id, None)
    await a.send_message({"n": 1, "text": "hi"}, to=b.peer_id)
    await b.send_answer(a.peer_id, "v=0 answer")

    async with asyncio.timeout(STEP):
        offer = await b.expect(protocol.RelayedOffer)
        cand = await b.expect(protocol.RelayedCandidate)
        end = await b.expect(protocol.RelayedCandidate)
        msg = await b.expect(protocol.RelayedMessage)
        answer = await a.expect(protocol.RelayedAnswer)
    assert (offer.from_, offer.sdp) == (a.peer_id, "v=0 offer")
    assert cand.from_ == a.peer_id and cand.candidate is not None
    assert dict(cand.candidate) == candidate
    assert end.candidate is None
    assert (msg.from_, msg.data) == (a.peer_id, {"n": 1, "text": "hi"})
    assert (answer.from_, answer.sdp) == (b.peer_id, "v=0 answer")


async def test_async_iteration_yields_typed_messages_in_order(connect: ClientFactory) -> None:
    a, b = await joined_pair(connect)
    assert b.peer_id is not None
    for i in range(5):
        await a.send_message(i)  # broadcast: no "to"
    await a.send_offer(b.peer_id, "sdp")
    got: list[object] = []
    async with asyncio.timeout(STEP):
        async for msg in b:
            got.append(msg)
            if isinstance(msg, protocol.RelayedOffer):
                break
    assert [m.data for m in got if isinstance(m, protocol.RelayedMessage)] == [0, 1, 2, 3, 4]
    assert all(getattr(m, "from_", None) == a.peer_id for m in got)


async def test_relay_error_arrives_in_the_stream(connect: ClientFactory) -> None:
    a, _ = await joined_pair(connect)
    await a.send_offer("no-such-peer", "sdp")
    async with asyncio.timeout(STEP):
        err = await a.recv()
    assert isinstance(err, protocol.ErrorMessage)
    assert err.code == "unknown-peer" and err.ref is None

    await a.send_message("x", to="no-such-peer")
    with pytest.raises(SignalingErrorReply) as exc:  # expect() turns an unexpected error into the exception
        async with asyncio.timeout(STEP):
            await a.expect(protocol.RelayedMessage)
    assert exc.value.code == "unknown-peer"


async def test_send_before_join_is_not_joined(connect: ClientFactory) -> None:
    client = await connect()
    await client.send_message("hello")
    async with asyncio.timeout(STEP):
        err = await client.expect(protocol.ErrorMessage)
    assert err.code == "not-joined"


async def test_expect_rejects_another_type(connect: ClientFactory) -> None:
    a, b = await joined_pair(connect)
    await b.send_message("not an offer")
    with pytest.raises(UnexpectedMessage) as exc:
        async with asyncio.timeout(STEP):
            await a.expect(protocol.RelayedOffer)
    assert isinstance(exc.value.got, protocol.RelayedMessage)


async def test_ping_waits_for_pong(connect: ClientFactory) -> None:
    client = await connect()
    await client.ping()  # works before join too
    await client.join("r")
    await asyncio.gather(client.ping(), client.ping(), client.ping())


async def test_leave_then_rejoin(connect: ClientFactory) -> None:
    a, b = await joined_pair(connect)
    old_id = b.peer_id
    await b.leave()
    assert b.welcome is None
    async with asyncio.timeout(STEP):
        left = await a.expect(protocol.PeerLeft)
    assert left.peer == old_id
    welcome = await b.join("r")
    assert [p.peer for p in welcome.peers] == [a.peer_id]
    async with asyncio.timeout(STEP):
        assert (await a.expect(protocol.PeerJoined)).peer == welcome.peer


async def test_disconnect_gives_peer_left_and_frees_the_room(
    signaling_server: WebSocketServer, connect: ClientFactory
) -> None:
    a = await connect()
    await a.join("r")
    async with SignalingClient.connect(ws_url(signaling_server)) as b:
        await b.join("r")
        async with asyncio.timeout(STEP):
            await a.expect(protocol.PeerJoined)
    assert b.closed and b.close_code == 1000
    async with asyncio.timeout(STEP):
        assert (await a.expect(protocol.PeerLeft)).peer == b.peer_id
    await a.close()
    directory = signaling_server.app.backends.directory  # type: ignore[attr-defined]
    # The server handles the close asynchronously, and its directory announces nothing: poll its counters.
    await wait_until(
        lambda: (directory.stats().peers, directory.stats().rooms) == (0, 0),
        timeout=STEP,
        message=lambda: f"the room was not freed: {directory.stats()}",
    )


async def test_recv_after_close_raises_and_iteration_ends(connect: ClientFactory) -> None:
    client = await connect()
    await client.join("r")
    await client.close()
    assert client.closed
    with pytest.raises(ConnectionClosed):
        await client.recv()
    with pytest.raises(ConnectionClosed):
        await client.join("again")
    assert [m async for m in client] == []  # a normal close ends iteration quietly


async def test_server_shutdown_ends_iteration_and_fails_pending_requests(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with SignalingClient.connect(ws_url(server), resume=False) as client:  # tests/clients/test_resume.py
        await client.join("r")

        reading = asyncio.Event()

        async def drain() -> list[object]:
            reading.set()
            return [m async for m in client]

        reader = asyncio.create_task(drain())
        await reading.wait()  # the reader is iterating (waiting for a message) when the server goes away
        await server.close()  # 1001 going away: a quiet end of the stream
        async with asyncio.timeout(STEP):
            assert await reader == []
        assert client.close_code == 1001
        with pytest.raises(ConnectionClosed):
            await client.ping()


async def test_connect_is_awaitable(signaling_server: WebSocketServer) -> None:
    client = await SignalingClient.connect(ws_url(signaling_server))
    try:
        welcome = await client.join("r")
        assert welcome.peer == client.peer_id
    finally:
        await client.close()
    assert client.closed


async def test_unread_messages_are_bounded_and_close_does_not_hang(start_signaling: ServerFactory) -> None:
    """A client whose application stops reading holds a bounded backlog (the rest waits in TCP) and still closes."""
    from signaling.clients.signaling_client import QUEUE_SIZE

    server = await start_signaling(rate_limit=100000, rate_burst=100000)
    async with SignalingClient.connect(ws_url(server)) as sender, SignalingClient.connect(ws_url(server)) as idle:
        await idle.join("r")
        await sender.join("r")
        assert idle.peer_id is not None
        total = QUEUE_SIZE * 3
        for i in range(total):
            await sender.send_message(i, to=idle.peer_id)
        await sender.ping()  # the server has handled (relayed) them all
        # The client's reader fills its queue in the background and announces nothing: poll the queue.
        await wait_until(
            idle._queue.full, timeout=STEP, message=lambda: f"the queue holds {idle._queue.qsize()} of {QUEUE_SIZE}"
        )
        assert idle._queue.qsize() == QUEUE_SIZE  # the reader stopped; the rest is in socket buffers
        async with asyncio.timeout(STEP):
            await idle.close()
        got = []
        with pytest.raises(ConnectionClosed):
            while True:
                got.append(await idle.recv())
        assert isinstance(got[0], protocol.PeerJoined)
        assert [m.data for m in got[1:] if isinstance(m, protocol.RelayedMessage)] == list(range(len(got) - 1))

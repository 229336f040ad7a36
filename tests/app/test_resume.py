"""Session resume over real sockets, one server (docs/protocol.md, "Session resume"): a TCP reset and a resume
that replays exactly what was missed, in-flight messages included; takeover; a normal close; grace expiry; the
Python client resuming by itself; and the drain that sends clients elsewhere."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from signaling.app.wiring import DRAINING, SignalingApp
from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.facts import TAKEN_OVER_CLOSE_CODE
from signaling.protocol.models import RelayedMessage, Welcome
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.exceptions import ConnectionClosed, InvalidStatus
from tests.helpers.ports import free_port

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
STEP = 5.0


def url(server: WebSocketServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(STEP):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(json.dumps(message))


async def join(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    await send(ws, type="join", room="r", **fields)
    welcome = await recv(ws)
    assert welcome["type"] == "welcome", welcome
    return welcome


async def nothing_pending(ws: ClientConnection) -> None:
    """The next message is the pong of a ping sent now: nothing else was on its way."""
    await send(ws, type="ping")
    assert await recv(ws) == {"type": "pong"}


async def test_a_tcp_reset_then_resume_replays_exactly_what_was_missed(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    alice = await connect(url(server))
    first = await join(alice, resumable=True)
    token, alice_id = first["resume"], first["peer"]
    async with connect(url(server)) as bob:
        bob_id = (await join(bob))["peer"]
        for n in range(5):
            await send(bob, type="message", to=alice_id, data=n)
        seen = [await recv(alice) for _ in range(3)]  # peer-joined, 0, 1: the rest is in flight
        assert [(m["type"], m.get("data"), m["seq"]) for m in seen] == [
            ("peer-joined", None, 1),
            ("message", 0, 2),
            ("message", 1, 3),
        ]
        alice.abort()  # a TCP reset: 2, 3 and 4 were written to a socket that is gone
        for n in range(5, 8):
            await send(bob, type="message", to=alice_id, data=n)  # kept while alice is away
        async with connect(url(server)) as again:
            welcome = await join(again, resume=token, last_seq=3, id=7)
            assert welcome["resumed"] is True and welcome["ref"] == 7 and welcome["resume"] != token
            assert [p["peer"] for p in welcome["peers"]] == [bob_id]
            replay = [await recv(again) for _ in range(6)]
            assert [(m["data"], m["seq"]) for m in replay] == [(n, n + 2) for n in range(2, 8)]
            assert welcome["peer"] == alice_id
            await send(bob, type="message", to=welcome["peer"], data="live")
            assert await recv(again) == {"type": "message", "from": bob_id, "data": "live", "seq": 10}
            await nothing_pending(bob)  # bob never saw alice leave


async def test_a_takeover_closes_the_old_connection_with_4001(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with connect(url(server)) as old, connect(url(server)) as bob:
        welcome = await join(old, resumable=True)
        await join(bob)
        assert (await recv(old))["seq"] == 1  # peer-joined
        async with connect(url(server)) as new:
            again = await join(new, resume=welcome["resume"], last_seq=0)  # this client had not seen it
            assert again["resumed"] is True and again["peer"] == welcome["peer"]
            assert (await recv(new))["seq"] == 1
            with pytest.raises(ConnectionClosed) as closed:
                await recv(old)
            assert closed.value.code == TAKEN_OVER_CLOSE_CODE
            await send(bob, type="message", to=welcome["peer"], data="still here")
            assert (await recv(new))["data"] == "still here"
            await nothing_pending(bob)


@pytest.mark.parametrize("how", ["close 1000", "leave"])
async def test_a_normal_close_or_leave_ends_the_session_at_once(start_signaling: ServerFactory, how: str) -> None:
    server = await start_signaling()
    async with connect(url(server)) as bob:
        alice = await connect(url(server))
        welcome = await join(alice, resumable=True)
        await join(bob)
        if how == "leave":
            await send(alice, type="leave")
        else:
            await alice.close(1000)
        assert await recv(bob) == {"type": "peer-left", "peer": welcome["peer"]}
        async with connect(url(server)) as again:
            fresh = await join(again, resume=welcome["resume"], last_seq=0)
            assert fresh["resumed"] is False and fresh["peer"] != welcome["peer"]
        await alice.close()


async def test_the_others_see_peer_left_when_the_grace_runs_out(start_signaling: ServerFactory) -> None:
    server = await start_signaling(resume_grace=1)
    async with connect(url(server)) as bob:
        alice = await connect(url(server))
        welcome = await join(alice, resumable=True)
        await join(bob)
        alice.abort()
        async with asyncio.timeout(3):
            assert json.loads(await bob.recv()) == {"type": "peer-left", "peer": welcome["peer"]}


async def test_the_python_client_resumes_by_itself_and_loses_nothing(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with (
        SignalingClient.connect([f"ws://127.0.0.1:{free_port()}/ws", url(server)]) as alice,  # first: nobody
        SignalingClient.connect(url(server), resume=False) as bob,
    ):
        welcome = await alice.join("r")
        assert welcome.resume is not None
        await bob.join("r")
        received: list[Any] = []
        resumed: list[Welcome] = []

        async def read(count: int) -> None:
            async for msg in alice:
                if isinstance(msg, RelayedMessage):
                    received.append(msg.data)
                elif isinstance(msg, Welcome):
                    resumed.append(msg)
                if len(received) == count:
                    return

        reading = asyncio.create_task(read(300))
        for n in range(300):
            await bob.send_message(n, to=welcome.peer)
            if n == 100:
                alice._ws.abort()  # a drop in the middle of the stream
        async with asyncio.timeout(STEP):
            await reading
        assert received == list(range(300))
        assert [(w.resumed, w.peer) for w in resumed] == [(True, welcome.peer)] and alice.reconnects == 1
        await bob.ping()  # and bob, never told of a departure, has nothing else waiting
        assert bob._queue.empty()


async def test_the_python_client_gives_up_after_its_resume_timeout(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    client = await SignalingClient.connect(url(server), resume_timeout=0.3)
    await client.join("r")
    await server.close()  # 1001 and nobody to resume with
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(STEP):
            await client.recv()
    assert closed.value.code == 1001
    await client.close()


async def test_a_drain_turns_readyz_and_new_clients_away_and_closes_with_1001(
    start_signaling: ServerFactory,
) -> None:
    server = await start_signaling()
    app = server.app
    assert isinstance(app, SignalingApp)
    alice = await connect(url(server))
    await join(alice, resumable=True)
    await app.shutdown(server)  # what SIGTERM does, before the listener closes
    with pytest.raises(ConnectionClosed) as closed:
        await recv(alice)
    assert (closed.value.code, closed.value.reason) == (1001, DRAINING)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(STEP):
        assert (await reader.read()).startswith(b"HTTP/1.1 503 ")
    writer.close()
    with pytest.raises(InvalidStatus) as refused:
        await connect(url(server))
    assert refused.value.status == 503


async def test_a_client_that_answers_the_servers_close_with_1000_keeps_its_session(
    start_signaling: ServerFactory,
) -> None:
    """aiohttp's client answers any close frame with 1000: a close the server started (a drain's 1001) is still a
    drop, and the session waits for its resume (it used to end, as if the client had left)."""
    server = await start_signaling()
    async with aiohttp.ClientSession() as http:
        alice = await http.ws_connect(url(server))
        await alice.send_json({"type": "join", "room": "r", "resumable": True})
        first = await alice.receive_json(timeout=STEP)
        async with connect(url(server)) as bob:
            await join(bob)
            assert (await alice.receive_json(timeout=STEP))["type"] == "peer-joined"
            bob_is_told = asyncio.create_task(recv(bob))
            closing = asyncio.create_task(server.close_connections(1001, DRAINING))  # bob is closed too
            message = await alice.receive(timeout=STEP)  # and alice answers with 1000
            assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, 1001)
            await closing
            with pytest.raises(ConnectionClosed):
                await bob_is_told  # its connection closes: no peer-left came before
    assert server.stats.closes[1000] == 1  # alice's echo was 1000, as aiohttp sends it
    again = await connect(url(server))
    welcome = await join(again, resume=first["resume"], last_seq=1)
    assert (welcome["resumed"], welcome["peer"]) == (True, first["peer"])
    await again.close()

"""The wiring of the domain to the transport, over real loopback sockets: what the server does to a connection
as a whole (rate limit, abuse, binary messages, the join deadline), beyond what one Session decides."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.exceptions import ConnectionClosed
from tests.helpers.wait import hold

pytestmark = pytest.mark.timeout(30)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
STEP = 5.0


async def recv_json(ws: ClientConnection) -> dict[str, object]:
    async with asyncio.timeout(STEP):
        data = json.loads(await ws.recv())
    assert isinstance(data, dict)
    return data


async def closed(ws: ClientConnection) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(STEP):
            while True:
                await ws.recv()
    return info.value


async def test_over_the_rate_a_message_gets_rate_limited_and_the_connection_lives(
    start_signaling: ServerFactory,
) -> None:
    server = await start_signaling(rate_limit=1, rate_burst=2)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        for i in range(3):
            await ws.send(json.dumps({"type": "ping", "id": i}))
        assert await recv_json(ws) == {"type": "pong"}
        assert await recv_json(ws) == {"type": "pong"}
        error = await recv_json(ws)
        assert error["code"] == "rate-limited" and error["ref"] == 2
        assert "over 1 messages/s (burst 2)" in str(error["message"])
        assert ws.close_code is None


async def test_persistent_abuse_is_closed_with_1008(start_signaling: ServerFactory) -> None:
    server = await start_signaling(rate_limit=1, rate_burst=1)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        flood = [json.dumps({"type": "ping", "id": i}) for i in range(150)]
        for text in flood:
            await ws.send(text)
        replies = []
        exc = None
        try:
            async with asyncio.timeout(STEP):
                while True:
                    replies.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed_exc:
            exc = closed_exc
        assert exc is not None and exc.code == 1008 and exc.reason == "persistent rate limit abuse"
        codes = [r.get("code") for r in replies]
        # One pong (the burst), then 99 refusals answered; the 100th refusal in a row closes.
        assert replies[0] == {"type": "pong"}
        assert codes[1:] == ["rate-limited"] * 99


async def test_a_binary_message_is_closed_with_1003(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send(b"\x00\x01")
        exc = await closed(ws)
    assert (exc.code, exc.reason) == (1003, "binary messages are not supported; send JSON text")


async def test_no_join_within_the_deadline_is_closed_with_1008(start_signaling: ServerFactory) -> None:
    server = await start_signaling(join_timeout=0.2)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        exc = await closed(ws)
    assert (exc.code, exc.reason) == (1008, "no join within the join timeout")


async def test_a_joined_connection_outlives_the_join_deadline(start_signaling: ServerFactory) -> None:
    server = await start_signaling(join_timeout=0.2)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send(json.dumps({"type": "join", "room": "r"}))
        assert (await recv_json(ws))["type"] == "welcome"
        await hold(0.4, why="past the join deadline, whose timer must not close a joined connection")
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv_json(ws) == {"type": "pong"}

"""endpoint.py, what both sides share, seen from the server's side (the client's is in test_client.py): pings whose
pongs complete a future, waiters failed with the ConnectionClosed when the connection is lost, drain()."""

from __future__ import annotations

import asyncio

import pytest

from signaling.app.echo import EchoApp
from signaling.ws.aio.server import ServerConnection, WebSocketServer
from signaling.ws.exceptions import ConnectionClosed
from signaling.ws.frames import Opcode
from tests.ws.aio.helpers import RawClient, server_side

pytestmark = pytest.mark.timeout(30)


async def open_pair(server: WebSocketServer) -> tuple[RawClient, ServerConnection]:
    client = await RawClient.open(server.port)
    return client, await server_side(server, client.sockname)


async def test_a_server_ping_completes_when_its_pong_comes(echo_server: WebSocketServer) -> None:
    client, sc = await open_pair(echo_server)
    numbered, custom = sc.ping(), sc.ping(b"mine")
    for _ in range(2):
        ping = await asyncio.wait_for(client.read_frame(), 5)
        assert ping.opcode == Opcode.PING
        client.send(Opcode.PONG, ping.payload)
    await asyncio.wait_for(asyncio.gather(numbered, custom), 5)
    with pytest.raises(ValueError, match="125"):
        sc.ping(b"x" * 126)
    client.close()


async def test_waiters_get_the_connection_closed_when_the_connection_is_lost(start_server) -> None:
    server = await start_server(EchoApp())
    client, sc = await open_pair(server)
    pong = sc.ping(b"never answered")
    client.send(Opcode.CLOSE, b"\x03\xe8")
    frames = [await asyncio.wait_for(client.read_frame(), 5) for _ in range(2)]
    assert [f.opcode for f in frames] == [Opcode.PING, Opcode.CLOSE]
    assert await asyncio.wait_for(client.at_eof(), 5)
    client.close()  # the server lingers until our EOF
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(pong, 5)
    assert (info.value.code, info.value.by_peer) == (1000, True)
    with pytest.raises(ConnectionClosed):
        await sc.drain()  # lost: nothing to wait for
    with pytest.raises(ConnectionClosed):
        sc.ping()


async def test_drain_returns_at_once_while_the_transport_is_not_paused(echo_server: WebSocketServer) -> None:
    client, sc = await open_pair(echo_server)
    sc.send_text("hello")
    await asyncio.wait_for(sc.drain(), 5)
    assert await asyncio.wait_for(client.read_data(), 5) == b"hello"
    client.close()

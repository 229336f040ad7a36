"""The asyncio server's timers over real loopback sockets: keepalive pings and their timeout, the handshake deadline
(slowloris included) and the idle timeout.

Raw-socket clients (tests/ws/aio/helpers.py) stand in where a client must misbehave: never answer pings, never
finish its request head. Where elapsed time is the stimulus (a trickle, a client that talks just often enough), it
passes through tests/helpers/wait.py's ``hold``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest
from websockets.asyncio.client import connect as ws_connect

from signaling.app.echo import EchoApp
from signaling.ws.aio.client import connect
from signaling.ws.exceptions import ConnectionClosed
from signaling.ws.frames import Opcode
from tests.helpers.inprocess import ws_url
from tests.helpers.wait import hold, wait_until
from tests.ws.aio.helpers import RawClient, held_connections, read_all

pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------------------------------------------ keepalive


async def test_server_pings_and_answered_pongs_keep_the_connection(start_server) -> None:
    server = await start_server(EchoApp(), ping_interval=0.15, ping_timeout=0.3)
    client = await RawClient.open(server.port)
    loop = asyncio.get_running_loop()
    times = []
    async with asyncio.timeout(5):
        for _ in range(3):
            frame = await client.read_frame()
            assert frame.opcode == Opcode.PING, frame
            times.append(loop.time())
            client.send(Opcode.PONG, frame.payload)
    # Three pings, each about one interval after the previous pong: the connection is kept, not dropped.
    assert times[-1] - times[0] >= 2 * 0.15 - 0.05
    client.send_text("still here")
    async with asyncio.timeout(5):
        assert await client.read_data() == b"still here"
    client.close()


async def test_websockets_client_answers_pings_and_stays_connected(start_server, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="websockets.client")

    def logged(prefix: str) -> int:  # frames the websockets client logs: "< PING ..." received, "> PONG ..." sent
        return sum(r.getMessage().startswith(prefix) for r in caplog.records)

    server = await start_server(EchoApp(), ping_interval=0.1, ping_timeout=0.2)
    async with ws_connect(ws_url(server), compression=None, ping_interval=None) as ws:
        # Five pings answered, 0.4 s from first to last: twice the ping timeout, so without the pongs the server
        # would have closed the connection before the last ping.
        await wait_until(
            lambda: logged("> PONG") >= 5,
            timeout=5,
            message=lambda: f"{logged('< PING')} pings received, {logged('> PONG')} pongs sent",
        )
        await ws.send("after pings")
        assert await asyncio.wait_for(ws.recv(), 5) == "after pings"
    assert logged("< PING") >= 3
    assert logged("> PONG") >= 3


async def test_client_that_never_answers_pings_is_closed_1011(start_server) -> None:
    interval, timeout, close_timeout = 0.2, 0.3, 0.3
    server = await start_server(EchoApp(), ping_interval=interval, ping_timeout=timeout, close_timeout=close_timeout)
    t0 = time.monotonic()
    client = await RawClient.open(server.port)
    pings = 0
    async with asyncio.timeout(5):
        while True:
            frame = await client.read_frame()  # never answered
            if frame.opcode == Opcode.PING:
                pings += 1
                continue
            break
        elapsed = time.monotonic() - t0
        assert frame.opcode == Opcode.CLOSE, frame
        assert frame.close_code == 1011
        assert "ping" in frame.close_reason
        assert await client.at_eof()
    assert pings == 1
    assert interval + timeout - 0.05 <= elapsed <= interval + timeout + close_timeout + 1.5, elapsed
    client.close()
    await wait_until(
        lambda: not server.connections,
        timeout=close_timeout + 1,
        interval=0.005,
        message=lambda: held_connections(server),
    )


# ------------------------------------------------------------------------------- handshake and idle timeouts


@pytest.mark.parametrize(
    "partial",
    [b"", b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"],
    ids=["silent", "partial-head"],
)
async def test_handshake_timeout_answers_408_and_closes(start_server, partial: bytes) -> None:
    server = await start_server(EchoApp(), handshake_timeout=0.3)
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(partial)
    response = await read_all(reader)  # returns at EOF: the server closed the connection
    elapsed = time.monotonic() - t0
    assert response.startswith(b"HTTP/1.1 408 "), response
    assert 0.29 <= elapsed < 2.5, elapsed
    writer.close()
    await wait_until(
        lambda: not server.connections, timeout=5, interval=0.005, message=lambda: held_connections(server)
    )


async def test_slowloris_trickle_does_not_extend_the_handshake_deadline(start_server) -> None:
    server = await start_server(EchoApp(), handshake_timeout=0.3)
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 1000

    async def trickle() -> None:
        for b in head:
            if writer.is_closing():
                return
            writer.write(bytes([b]))
            await hold(0.02, why="a trickle: one byte every 20 ms, to see that it does not extend the deadline")

    trickler = asyncio.create_task(trickle())
    response = await read_all(reader)
    elapsed = time.monotonic() - t0
    trickler.cancel()
    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
        await trickler
    assert response.startswith(b"HTTP/1.1 408 "), response
    assert elapsed < 2.5, elapsed
    writer.close()


async def test_idle_timeout_closes_a_silent_connection(start_server) -> None:
    server = await start_server(EchoApp(), idle_timeout=0.3, ping_interval=0)
    t0 = time.monotonic()
    async with connect(ws_url(server)) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    elapsed = time.monotonic() - t0
    assert info.value.code == 1001
    assert info.value.reason == "idle timeout"
    assert 0.29 <= elapsed < 2.5, elapsed


async def test_idle_timeout_spares_a_connection_that_talks(start_server) -> None:
    server = await start_server(EchoApp(), idle_timeout=0.3, ping_interval=0)
    async with connect(ws_url(server)) as ws:
        for i in range(6):  # 0.6 s in all, twice the idle timeout
            await ws.send(f"m{i}")
            assert await asyncio.wait_for(ws.recv(), 5) == f"m{i}"
            await hold(0.1, why="talk every 0.1 s, more often than the idle timeout")
        assert ws.close_code is None

"""The asyncio server's flow control over real loopback sockets: a peer that does not read makes the server stop
reading from it while its send buffer stays bounded, and a peer that lets too much pile up is closed with 1008
without stalling anybody else.

The peers that misbehave are raw-socket clients (tests/ws/aio/helpers.py); the application is the echo, scripted
(tests/helpers/apps.py) where one connection must write to another.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from signaling.app.echo import EchoApp
from signaling.ws.aio.client import connect
from signaling.ws.aio.server import READ_BUFFER_SIZE, ServerConnection, WebSocketServer
from signaling.ws.frames import Opcode
from tests.helpers.apps import ScriptedEchoApp
from tests.helpers.inprocess import ws_url
from tests.helpers.wait import hold, wait_until
from tests.ws.aio.helpers import RawClient, server_side
from tests.ws.helpers import close_body

pytestmark = pytest.mark.timeout(30)

# ------------------------------------------------------------------------------------------- slow consumers

LIMIT = 256 * 1024
BIG_DATA = "x" * 60_000  # a ~60 KB relayed message, under the 64 KiB message limit
FLOOD_PATH = "/flood"  # the slow peer and the sender; relays reach only connections on the same path


async def start_flood_server(start_server, *, close_timeout: float) -> tuple[ScriptedEchoApp, WebSocketServer]:
    """A scripted echo server whose send buffers pause reading at 64 KiB and give up on a peer at LIMIT."""
    app = ScriptedEchoApp()
    server = await start_server(
        app,
        write_buffer_high=64 * 1024,
        write_buffer_low=16 * 1024,
        write_buffer_limit=LIMIT,
        close_timeout=close_timeout,
    )
    return app, server


async def flood_until_slow_consumer_closed(server: WebSocketServer, slow: RawClient) -> tuple[ServerConnection, int]:
    """A second peer relays big messages to ``slow`` (which never reads) until the server gives up on it.

    Meanwhile a third connection (on another path, out of the relays' reach) keeps doing echo round trips, whose
    worst latency is checked: the slow peer must not stall anybody else. Returns the slow peer's server-side
    connection and the largest send buffer the server held for it.
    """
    slow_sc = await server_side(server, slow.sockname)
    biggest = 0
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    async with connect(ws_url(server, FLOOD_PATH)) as sender, connect(ws_url(server, "/elsewhere")) as bystander:
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                t0 = loop.time()
                await bystander.send("probe")
                assert await bystander.recv() == "probe"
                latencies.append(loop.time() - t0)
                await hold(0.002, why="pacing: probe all along the flood without flooding the server too")

        prober = asyncio.create_task(probe())
        relay = json.dumps({"relay": BIG_DATA, "send": ["relayed"]})
        sent = 0
        async with asyncio.timeout(15):
            while slow_sc.conn.close_sent is None:
                await sender.send(relay)
                assert await sender.recv() == "relayed"  # the answer proves the server has handled the relay
                sent += 1
                if slow_sc.transport is not None:
                    biggest = max(biggest, slow_sc.transport.get_write_buffer_size())
        stop.set()
        await asyncio.wait_for(prober, 5)
    assert sent > 1
    assert latencies, "the bystander got no answer while the slow peer was flooded"
    assert max(latencies) < 1.0, f"bystander stalled: worst round trip {max(latencies):.3f} s"
    return slow_sc, biggest


async def test_slow_consumer_is_closed_with_1008_and_others_keep_going(start_server) -> None:
    # close_timeout: long enough for the slow client to read what is buffered below.
    _, server = await start_flood_server(start_server, close_timeout=10)
    slow = await RawClient.open(server.port, target=FLOOD_PATH, rcvbuf=64 * 1024)
    slow_sc, biggest = await flood_until_slow_consumer_closed(server, slow)
    code, reason = slow_sc.conn.close_sent  # type: ignore[misc]
    assert code == 1008
    assert "slow consumer" in reason
    # Memory stays bounded: at most the limit plus what the last flushes added (a relay and the close frame).
    assert biggest <= LIMIT + 3 * 64 * 1024, biggest
    # When the client finally reads, it gets what was buffered, then the 1008 close frame, then EOF.
    async with asyncio.timeout(10):
        close, data_frames = await slow.read_until_close()
        assert close.close_code == 1008
        assert "slow consumer" in close.close_reason
        assert data_frames >= 1
        assert await slow.at_eof()
    slow.close()  # the server lingers (reading) until our EOF, then lets go of the connection
    await wait_until(
        lambda: slow_sc not in server.connections,
        timeout=5,
        interval=0.005,
        message="the server kept the slow consumer's connection after its EOF",
    )


async def test_slow_consumer_that_never_reads_is_dropped_within_close_timeout(start_server) -> None:
    app, server = await start_flood_server(start_server, close_timeout=0.3)
    slow = await RawClient.open(server.port, target=FLOOD_PATH, rcvbuf=64 * 1024)
    slow_sc, _ = await flood_until_slow_consumer_closed(server, slow)
    t0 = time.monotonic()
    # The close frame sits behind megabytes nobody reads: the server aborts TCP after close_timeout.
    await wait_until(
        lambda: slow_sc not in server.connections,
        timeout=3,
        interval=0.005,
        message="the server kept the slow consumer's connection past close_timeout",
    )
    assert time.monotonic() - t0 < 2.0
    assert slow_sc.transport is None or slow_sc.transport.is_closing()
    # And the application was told (the sender's and the bystander's closes may come first).
    async with asyncio.timeout(5):
        while (closed := await app.closes.get()).code != 1008:
            assert closed.code == 1000, closed
    assert "slow consumer" in closed.reason
    slow.close()


# ------------------------------------------------------------------------------------------ paused reading


async def test_unread_echoes_pause_reading_and_bound_the_send_buffer(start_server, monkeypatch) -> None:
    """A client that writes and never reads: the server stops reading it once its send buffer passes the high
    watermark, so the client's writes block instead of the server's memory growing, and nothing is lost.

    Waits only on what the sockets show: the server transport's ``is_reading()``, both transports' buffer sizes.
    """
    high, low = 64 * 1024, 16 * 1024
    server = await start_server(
        EchoApp(),
        write_buffer_high=high,
        write_buffer_low=low,
        write_buffer_limit=8 * 1024 * 1024,
        max_message_size=1 << 20,
    )
    client = await RawClient.open(server.port, rcvbuf=64 * 1024)
    sc = await server_side(server, client.sockname)
    assert sc.transport is not None
    transport = sc.transport
    # Fixed kernel buffers on both sides of the client's writes (no autotuning to tens of MB), so what TCP can
    # absorb is far below what the client writes: its writer must end up waiting on the server.
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client_transport = client.writer.transport
    client_transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    # Every write of the server, as the transport saw it right after: buffered bytes, and whether it still reads.
    writes: list[tuple[int, bool]] = []
    real_write = transport.write

    def recording_write(data: bytes | bytearray | memoryview) -> None:
        real_write(data)
        writes.append((transport.get_write_buffer_size(), transport.is_reading()))

    monkeypatch.setattr(transport, "write", recording_write)

    payload = bytes(range(256)) * 240  # 61,440 bytes
    count = 400  # ~24 MB
    # Before a read the buffer is at most `high` (above it, reading is paused), and one read echoes at most what it
    # brought plus the message begun in the read before: with the server's receive buffer fixed at 64 KiB (the
    # kernel doubles it), well under one READ_BUFFER_SIZE.
    bound = high + READ_BUFFER_SIZE + 1024
    written = 0

    async def writer() -> None:
        nonlocal written
        for _ in range(count):
            client.send(Opcode.BINARY, payload)
            await client.writer.drain()
            written += 1

    def assert_paused_exactly_above_high() -> None:
        wrong = [(size, reading) for size, reading in writes if reading is not (size <= high)]
        assert not wrong, f"(buffered, reading) after writes, high={high}: {wrong}"
        biggest = max(size for size, _ in writes)
        assert biggest <= bound, (biggest, bound)

    writing = asyncio.create_task(writer())
    client_high = client_transport.get_write_buffer_limits()[1]

    def stalled() -> bool:
        # The server does not read, and the client's transport holds more than its high watermark: asyncio has
        # paused the client's protocol, so drain() waits on a future that only resume_writing() completes.
        return not transport.is_reading() and client_transport.get_write_buffer_size() > client_high

    await wait_until(
        stalled,
        timeout=10,
        interval=0.005,
        message=lambda: (
            f"no stall: server reading={transport.is_reading()}, {transport.get_write_buffer_size()} buffered; "
            f"client {client_transport.get_write_buffer_size()} buffered, {written}/{count} frames written"
        ),
    )
    assert not writing.done() and written < count, "the writer finished: the server buffered everything"
    # Reading paused exactly when a write took the buffer past the high watermark (and the buffer stayed bounded).
    assert any(size > high for size, _ in writes)
    assert_paused_exactly_above_high()
    assert sc.is_open
    # Now read everything: reading resumes and every byte comes back, in order.
    async with asyncio.timeout(20):
        for _ in range(count):
            assert await client.read_data() == payload
        await writing
    assert transport.is_reading()
    assert_paused_exactly_above_high()
    client.send(Opcode.CLOSE, close_body(1000))
    async with asyncio.timeout(5):
        close, _ = await client.read_until_close()
    assert close.close_code == 1000
    client.close()

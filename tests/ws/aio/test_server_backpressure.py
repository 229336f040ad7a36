"""The asyncio server's flow control over real loopback sockets: a peer that does not read makes the server stop
reading from it while its send buffer stays bounded, and a peer that lets too much pile up is closed with 1008
without stalling anybody else.

The peers that misbehave are raw-socket clients (tests/ws/aio/helpers.py); the application is the echo, scripted
(tests/helpers/apps.py) where one connection must write to another.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from signaling.app.echo import EchoApp
from signaling.ws.aio.client import connect
from signaling.ws.aio.server import ServerConnection, WebSocketServer
from signaling.ws.frames import Opcode
from tests.helpers.apps import ScriptedEchoApp
from tests.helpers.inprocess import ws_url
from tests.helpers.wait import hold, stays_true, wait_until
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
        while (closed := await app.closes.get())[0] != 1008:
            assert closed[0] == 1000, closed
    assert "slow consumer" in closed[1]
    slow.close()


# ------------------------------------------------------------------------------------------ paused reading


async def test_unread_echoes_pause_reading_and_bound_the_send_buffer(start_server) -> None:
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
    sizes: list[int] = []
    real_write = transport.write

    def recording_write(data: bytes | bytearray | memoryview) -> None:
        real_write(data)
        sizes.append(transport.get_write_buffer_size())

    transport.write = recording_write  # type: ignore[method-assign]

    payload = bytes(range(256)) * 240  # 61,440 bytes
    count = 400  # ~24 MB: far more than the kernel buffers of a loopback connection hold
    written = 0

    async def writer() -> None:
        nonlocal written
        for _ in range(count):
            client.send(Opcode.BINARY, payload)
            await client.writer.drain()
            written += 1

    writing = asyncio.create_task(writer())
    # The client reads nothing: the server's send buffer passes the high watermark and it stops reading.
    await wait_until(
        lambda: sc._paused_reading,
        timeout=10,
        interval=0.005,
        message=lambda: f"reading never paused ({written} frames in, {transport.get_write_buffer_size()} buffered)",
    )
    assert not transport.is_reading()
    # Show that the writer stays blocked instead of the server buffering more.
    await stays_true(lambda: not writing.done(), for_seconds=0.2, message="the writer finished: all was buffered")
    stalled_at = written
    await stays_true(
        lambda: written == stalled_at, for_seconds=0.05, message=lambda: f"{written - stalled_at} more frames went in"
    )
    # One read (at most 256 KiB) echoed after the last check below `high` is the most that can be buffered.
    assert max(sizes) <= high + 256 * 1024 + 1024, max(sizes)
    assert sc.is_open
    # Now read everything: reading resumes and every byte comes back, in order.
    async with asyncio.timeout(20):
        for _ in range(count):
            assert await client.read_data() == payload
        await writing
    assert not sc._paused_reading
    assert transport.is_reading()
    assert max(sizes) <= high + 256 * 1024 + 1024
    client.send(Opcode.CLOSE, close_body(1000))
    async with asyncio.timeout(5):
        close, _ = await client.read_until_close()
    assert close.close_code == 1000
    client.close()

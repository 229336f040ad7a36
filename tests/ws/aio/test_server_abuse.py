"""What one misbehaving client cannot take from the others, over real loopback sockets: memory for unfinished
messages, CPU for frames that are not messages, connection slots before the request is done, and the send
buffers of the peers it writes to.

Each test is the regression test of an attack run against an earlier server (see docs/protocol.md, "Limits").
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from signaling.app.echo import EchoApp
from signaling.ws.frames import Opcode, encode_frame
from tests.helpers.apps import ScriptedEchoApp
from tests.helpers.wait import hold, wait_until
from tests.ws.aio.helpers import RawClient, held_connections, read_all, server_side

pytestmark = pytest.mark.timeout(30)


def close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0])


async def test_a_message_in_too_many_fragments_is_refused_with_1009(start_server) -> None:
    server = await start_server(EchoApp(), max_fragments=100)
    client = await RawClient.open(server.port)
    client.send(Opcode.TEXT, b"a", fin=False)
    for _ in range(150):
        client.send(Opcode.CONT, b"a", fin=False)
    frame, _ = await asyncio.wait_for(client.read_until_close(), 5)
    assert close_code(frame.payload) == 1009
    assert b"over 100 frames" in frame.payload


async def test_an_unfinished_message_is_closed_after_the_message_timeout(start_server) -> None:
    server = await start_server(EchoApp(), message_timeout=0.3, handshake_timeout=0.4)
    client = await RawClient.open(server.port)
    client.send(Opcode.TEXT, b"never ", fin=False)
    frame, _ = await asyncio.wait_for(client.read_until_close(), 5)
    assert close_code(frame.payload) == 1008
    assert b"message not finished within 0.3 s" in frame.payload


async def test_a_slow_but_steady_message_stream_is_not_an_unfinished_message(start_server) -> None:
    """Messages that keep finishing never trip the timer, even when one is always in progress at each sweep."""
    server = await start_server(EchoApp(), message_timeout=0.3, handshake_timeout=0.4)
    client = await RawClient.open(server.port)
    for i in range(12):  # about 1.2 s: four times the timeout
        client.send(Opcode.TEXT, b"part ", fin=False)
        await hold(0.05, why="a message whose end comes later, while the sweep looks")
        client.send(Opcode.CONT, str(i).encode())
        assert await asyncio.wait_for(client.read_data(), 5) == f"part {i}".encode()
        client.send(Opcode.TEXT, b"next ", fin=False)
        await hold(0.05, why="the same, for the next message")
        client.send(Opcode.CONT, b".")
        assert await asyncio.wait_for(client.read_data(), 5) == b"next ."


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.CONT], ids=["pings", "empty-fragments"])
async def test_a_burst_of_frames_in_one_read_is_closed_with_1008(start_server, opcode: Opcode) -> None:
    """Over the burst within one read: refused before the rest of the read is parsed (40,000 fit in 256 KiB)."""
    server = await start_server(EchoApp(), frame_rate=100, frame_burst=200, max_fragments=10**6)
    client = await RawClient.open(server.port)
    if opcode == Opcode.CONT:
        client.send(Opcode.TEXT, b"", fin=False)
    client.writer.write(b"".join(encode_frame(opcode, b"", fin=opcode != Opcode.CONT, mask=True) for _ in range(1000)))
    frame, _ = await asyncio.wait_for(client.read_until_close(), 5)
    assert close_code(frame.payload) == 1008
    assert b"over 200 " in frame.payload and b"in one read" in frame.payload


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.CONT], ids=["pings", "empty-fragments"])
async def test_a_steady_frame_flood_is_closed_with_1008(start_server, opcode: Opcode) -> None:
    """Small batches in separate reads, each under the per-read cap, still run out the frame budget."""
    server = await start_server(EchoApp(), frame_rate=100, frame_burst=1000, max_fragments=10**6)
    client = await RawClient.open(server.port)
    if opcode == Opcode.CONT:
        client.send(Opcode.TEXT, b"", fin=False)
    batch = b"".join(encode_frame(opcode, b"", fin=opcode != Opcode.CONT, mask=True) for _ in range(20))

    async def flood() -> None:
        for _ in range(500):
            client.writer.write(batch)
            await client.writer.drain()
            await hold(0.01, why="separate reads: a steady flood, not one burst")

    flooding = asyncio.create_task(flood())
    try:
        frame, _ = await asyncio.wait_for(client.read_until_close(), 5)
    finally:
        flooding.cancel()
    assert close_code(frame.payload) == 1008
    assert b"over 100 frames/s (burst 1000)" in frame.payload


async def test_unfinished_requests_from_one_address_are_capped(start_server) -> None:
    """Slowloris: half-sent heads from one address hold at most max_handshakes_per_ip sockets."""
    server = await start_server(EchoApp(), max_handshakes_per_ip=5, handshake_timeout=5)
    holders = [await RawClient.open(server.port, upgrade=False) for _ in range(5)]
    for h in holders:
        h.writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # and never the end of the head
    await wait_until(lambda: len(server.connections) == 5, timeout=5, message=held_connections(server))
    extra = await RawClient.open(server.port, upgrade=False)
    refused = await read_all(extra.reader)
    assert refused.startswith(b"HTTP/1.1 429 ") and b"too many unfinished requests" in refused
    holders[0].writer.write(b"\r\n")  # one finishes its request: a slot frees
    assert (await read_all(holders[0].reader)).startswith(b"HTTP/1.1 426 ")
    ok = await RawClient.open(server.port)  # a whole handshake gets through again
    ok.send_text("still here")
    assert await asyncio.wait_for(ok.read_data(), 5) == b"still here"
    assert server.stats.rejections["handshakes_per_ip"] == 1
    for h in (*holders, extra, ok):
        h.close()


async def test_sockets_past_the_open_file_budget_get_503_at_once(start_server) -> None:
    server = await start_server(EchoApp(), max_sockets=3, max_handshakes_per_ip=0)
    held = [await RawClient.open(server.port) for _ in range(3)]
    extra = await RawClient.open(server.port, upgrade=False)
    refused = await read_all(extra.reader)
    assert refused.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in refused
    for h in held:
        h.close()


async def test_a_sender_waits_for_a_slow_receiver_instead_of_filling_its_buffer(start_server) -> None:
    """The server slows the writer down to what the reader takes, and evicts no one who keeps reading."""
    high = 64 * 1024
    app = ScriptedEchoApp()
    server = await start_server(
        app, write_buffer_high=high, write_buffer_low=16 * 1024, write_buffer_limit=64 * high, max_message_size=1 << 20
    )
    receiver = await RawClient.open(server.port, rcvbuf=64 * 1024)
    receiver_side = await server_side(server, receiver.sockname)
    sender = await RawClient.open(server.port)
    sender_side = await server_side(server, sender.sockname)
    chunk = "x" * 16 * 1024
    count = 400  # 6.4 MB: far more than the kernel buffers hold, and past write_buffer_limit if all were kept
    for _ in range(count):
        sender.send_text('{"relay": "' + chunk + '"}')
    await wait_until(
        lambda: sender_side.transport is not None and not sender_side.transport.is_reading(),
        timeout=10,
        message="the sender's reading never paused",
    )
    peak = receiver_side.peak_buffer
    assert peak <= 64 * high, peak
    # The receiver reads everything, slowly at first: nobody is closed, everything arrives.
    received = 0
    async with asyncio.timeout(20):
        while received < count:
            payload = await receiver.read_data()
            assert payload == chunk.encode()
            received += 1
    assert receiver_side.is_open and sender_side.is_open
    await wait_until(lambda: sender_side.transport is not None and sender_side.transport.is_reading(), timeout=5)
    for c in (receiver, sender):
        c.close()


async def test_a_receiver_that_stops_reading_is_evicted_and_the_sender_goes_on(start_server) -> None:
    high = 64 * 1024
    server = await start_server(
        ScriptedEchoApp(),
        write_buffer_high=high,
        write_buffer_low=16 * 1024,
        slow_consumer_timeout=0.5,
        handshake_timeout=0.5,
        max_message_size=1 << 20,
    )
    stalled = await RawClient.open(server.port, rcvbuf=64 * 1024)
    stalled_side = await server_side(server, stalled.sockname)
    sender = await RawClient.open(server.port)
    chunk = "y" * 16 * 1024
    for _ in range(1000):  # 16 MB: more than the kernel's socket buffers take (up to 4 MB each way here)
        sender.send_text('{"relay": "' + chunk + '"}')
    # The stalled receiver never reads: after slow_consumer_timeout it is closed, and the sender is read again.
    await wait_until(lambda: not stalled_side.is_open, timeout=10, message="the stalled receiver was never closed")
    assert stalled_side.conn.close_code == 1008
    sender.send_text("after")
    async with asyncio.timeout(10):
        while (await sender.read_data()) != b"after":
            pass
    for c in (stalled, sender):
        c.close()

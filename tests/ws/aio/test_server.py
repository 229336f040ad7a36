"""The asyncio server over real loopback sockets: backpressure, keepalive, timeouts, limits, shutdown.

Raw-socket clients are used wherever the exact bytes matter or where a client must misbehave (stop reading,
never answer pings, never finish its request head). Every wait is bounded and waits on an event where there is
one; server-side state, which announces nothing, is polled through tests/helpers/wait.py, which also holds the
few checks that something does *not* happen for a while (a writer stays blocked).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from signaling.app.echo import EchoApp
from signaling.ws.aio.client import connect
from signaling.ws.aio.server import ServerConnection, WebSocketServer
from signaling.ws.exceptions import ConnectionClosed, HandshakeError
from tests.helpers import async_running_server
from tests.helpers.wait import hold, stays_true, wait_until
from tests.ws.helpers import RFC_ACCEPT, RFC_KEY, request_head

pytestmark = pytest.mark.timeout(30)

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
ZERO_MASK = b"\x00\x00\x00\x00"  # a valid masking key that leaves the payload as is: cheap for big frames


def masked_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + ZERO_MASK + payload


@dataclass
class Frame:
    opcode: int
    fin: bool
    payload: bytes

    @property
    def close_code(self) -> int:
        assert self.opcode == CLOSE
        return int.from_bytes(self.payload[:2], "big")

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode()


class RawClient:
    """A WebSocket client made of a bare asyncio stream: it does only what the test tells it to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, *, target: str = "/ws", upgrade: bool = True, rcvbuf: int | None = None
    ) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        client = cls(reader, writer)
        if upgrade:
            head = await client.handshake(port, target)
            assert head.startswith(b"HTTP/1.1 101 "), head
        return client

    @property
    def sockname(self) -> tuple[str, int]:
        name = self.writer.get_extra_info("sockname")
        return (name[0], name[1])

    async def handshake(self, port: int, target: str = "/ws") -> bytes:
        headers = [
            ("Host", f"127.0.0.1:{port}"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", RFC_KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
        self.writer.write(request_head(target=target, headers=headers))
        async with asyncio.timeout(5):
            return await self.reader.readuntil(b"\r\n\r\n")

    def send(self, opcode: int, payload: bytes = b"", *, fin: bool = True) -> None:
        self.writer.write(masked_frame(opcode, payload, fin=fin))

    def send_text(self, text: str) -> None:
        self.send(TEXT, text.encode())

    async def read_frame(self) -> Frame:
        r = self.reader
        b0, b1 = await r.readexactly(2)
        assert not b1 & 0x80, "server frames are never masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await r.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await r.readexactly(8))[0]
        return Frame(b0 & 0x0F, bool(b0 & 0x80), await r.readexactly(n))

    async def read_data(self) -> bytes:
        """The next data frame's payload, answering (or skipping) control frames before it."""
        while True:
            frame = await self.read_frame()
            if frame.opcode in (TEXT, BINARY):
                return frame.payload
            assert frame.opcode in (PING, PONG), frame

    async def read_until_close(self) -> tuple[Frame, int]:
        """Skip everything up to the close frame; returns it and how many data frames came before it."""
        data_frames = 0
        while True:
            frame = await self.read_frame()
            if frame.opcode == CLOSE:
                return frame, data_frames
            if frame.opcode in (TEXT, BINARY, CONT):
                data_frames += 1

    async def at_eof(self) -> bool:
        """True once the server has closed TCP (read returns b"" or the connection was reset)."""
        try:
            return await self.reader.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.transport.abort()


async def server_side(server: WebSocketServer, client_sockname: tuple[str, int]) -> ServerConnection:
    """The server's ServerConnection for the client whose local address is ``client_sockname``.

    Polled: the server's connection table announces nothing when an accepted connection is added.
    """

    def find() -> ServerConnection | None:
        for c in server.connections:
            if c.remote is not None and tuple(c.remote[:2]) == client_sockname:
                return c
        return None

    await wait_until(
        lambda: find() is not None, timeout=5, interval=0.005, message=f"no server connection for {client_sockname}"
    )
    found = find()
    assert found is not None
    return found


def held_connections(server: WebSocketServer) -> str:
    """For failure messages of polls on the server's connection table."""
    return f"the server still holds {len(server.connections)} connection(s)"


def ws_url(server: WebSocketServer, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


JOIN = json.dumps({"type": "join", "room": "bp"})
PING_MSG = '{"type":"ping"}'


async def until_type(ws: Any, kind: str) -> dict[str, Any]:
    """Receive signaling messages until one of type ``kind`` arrives (others, e.g. peer-left, are skipped)."""
    while True:
        msg = json.loads(await ws.recv())
        if msg["type"] == kind:
            return msg  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------- backpressure

LIMIT = 256 * 1024
BIG_DATA = "x" * 60_000  # a ~60 KB relayed `message`, under the 64 KiB message limit


async def flood_until_slow_consumer_closed(server: WebSocketServer, slow: RawClient) -> tuple[ServerConnection, int]:
    """A second peer broadcasts big messages to ``slow`` (which never reads) until the server gives up on it.

    Meanwhile a third connection (another room) keeps doing ping/pong round trips, whose worst latency is checked:
    the slow peer must not stall anybody else. Returns the slow peer's server-side connection and the largest
    send buffer the server held for it.
    """
    slow.send_text(JOIN)
    assert json.loads(await slow.read_data())["type"] == "welcome"
    slow_sc = await server_side(server, slow.sockname)
    biggest = 0
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    async with connect(ws_url(server)) as sender, connect(ws_url(server)) as bystander:
        await sender.send(JOIN)
        await until_type(sender, "welcome")
        await bystander.send(json.dumps({"type": "join", "room": "elsewhere"}))
        await until_type(bystander, "welcome")
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                t0 = loop.time()
                await bystander.send(PING_MSG)
                await until_type(bystander, "pong")
                latencies.append(loop.time() - t0)
                await hold(0.002, why="pacing: probe all along the flood without flooding the server too")

        prober = asyncio.create_task(probe())
        relayed = json.dumps({"type": "message", "data": BIG_DATA})
        sent = 0
        async with asyncio.timeout(15):
            while slow_sc.conn.close_sent is None:
                await sender.send(relayed)
                await sender.send(PING_MSG)  # the pong proves the server has handled the relay
                await until_type(sender, "pong")
                sent += 1
                if slow_sc.transport is not None:
                    biggest = max(biggest, slow_sc.transport.get_write_buffer_size())
        stop.set()
        await asyncio.wait_for(prober, 5)
    assert sent > 1
    assert latencies, "the bystander got no answer while the slow peer was flooded"
    assert max(latencies) < 1.0, f"bystander stalled: worst round trip {max(latencies):.3f} s"
    return slow_sc, biggest


async def test_slow_consumer_is_closed_with_1008_and_others_keep_going(start_signaling) -> None:
    server = await start_signaling(
        write_buffer_high=64 * 1024,
        write_buffer_low=16 * 1024,
        write_buffer_limit=LIMIT,
        rate_limit=100_000,
        rate_burst=100_000,
        close_timeout=10,  # long enough for the slow client to read what is buffered below
    )
    slow = await RawClient.open(server.port, rcvbuf=64 * 1024)
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


async def test_slow_consumer_that_never_reads_is_dropped_within_close_timeout(start_signaling) -> None:
    server = await start_signaling(
        write_buffer_high=64 * 1024,
        write_buffer_low=16 * 1024,
        write_buffer_limit=LIMIT,
        rate_limit=100_000,
        rate_burst=100_000,
        close_timeout=0.3,
    )
    slow = await RawClient.open(server.port, rcvbuf=64 * 1024)
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
    await wait_until(
        lambda: server.app.connections == 0,
        timeout=5,
        interval=0.005,
        message=lambda: f"the app still counts {server.app.connections} connection(s)",
    )
    slow.close()


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
            client.send(BINARY, payload)
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
    client.send(CLOSE, struct.pack("!H", 1000))
    async with asyncio.timeout(5):
        close, _ = await client.read_until_close()
    assert close.close_code == 1000
    client.close()


# ------------------------------------------------------------------------------------------------ keepalive


async def test_server_pings_and_answered_pongs_keep_the_connection(start_server) -> None:
    server = await start_server(EchoApp(), ping_interval=0.15, ping_timeout=0.3)
    client = await RawClient.open(server.port)
    loop = asyncio.get_running_loop()
    times = []
    async with asyncio.timeout(5):
        for _ in range(3):
            frame = await client.read_frame()
            assert frame.opcode == PING, frame
            times.append(loop.time())
            client.send(PONG, frame.payload)
    # Three pings, each about one interval after the previous pong: the connection is kept, not dropped.
    assert times[-1] - times[0] >= 2 * 0.15 - 0.05
    client.send_text("still here")
    async with asyncio.timeout(5):
        assert await client.read_data() == b"still here"
    client.close()


async def test_websockets_client_answers_pings_and_stays_connected(start_server, caplog) -> None:
    import logging

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
            if frame.opcode == PING:
                pings += 1
                continue
            break
        elapsed = time.monotonic() - t0
        assert frame.opcode == CLOSE, frame
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


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection (at most 5 s)."""
    async with asyncio.timeout(5):
        return await reader.read()


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


# -------------------------------------------------------------------------------------- connection limit


async def test_max_connections_refuses_upgrades_with_503_but_serves_http(start_signaling) -> None:
    server = await start_signaling(max_connections=2)
    url = ws_url(server)
    async with connect(url) as first, connect(url) as second:
        with pytest.raises(HandshakeError) as info:
            await connect(url)
        assert info.value.status == 503
        # The exact response, from a raw client.
        raw = await RawClient.open(server.port, upgrade=False)
        raw.writer.write(
            request_head(
                target="/ws",
                headers=[
                    ("Host", "127.0.0.1"),
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Key", RFC_KEY),
                    ("Sec-WebSocket-Version", "13"),
                ],
            )
        )
        response = await read_all(raw.reader)
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"\r\nRetry-After: " in head
        assert body == b"server is at its connection limit, try again later\n"
        # Plain HTTP is not an upgrade and is not counted.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await read_all(reader)).startswith(b"HTTP/1.1 200 OK\r\n")
        writer.close()
        # The two open connections still work.
        for ws in (first, second):
            await ws.send(PING_MSG)
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        await second.close()
        await wait_until(
            lambda: server.open_count == 1,
            timeout=5,
            interval=0.005,
            message=lambda: f"open_count is {server.open_count}",
        )
        async with connect(url) as third:
            await third.send(PING_MSG)
            assert json.loads(await asyncio.wait_for(third.recv(), 5)) == {"type": "pong"}


# ------------------------------------------------------------------------------------------------- shutdown


async def test_programmatic_close_sends_1001_to_everyone_and_stops_accepting(start_server) -> None:
    server = await start_server(EchoApp(), close_timeout=2)
    url = ws_url(server)
    a = await connect(url)
    b = await connect(url)
    port = server.port
    t0 = time.monotonic()
    await asyncio.wait_for(server.close(), 5)
    assert time.monotonic() - t0 < 1.0  # the clients answered: no need to wait for the timeout
    for ws in (a, b):
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.code == 1001
        assert info.value.reason == "server shutting down"
        assert ws.close_code == 1001
    assert not server.connections
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{port}/ws")


async def test_programmatic_close_is_bounded_when_a_client_does_not_answer(start_server) -> None:
    server = await start_server(EchoApp(), close_timeout=0.3)
    silent = await RawClient.open(server.port)  # will never answer the close frame
    await server_side(server, silent.sockname)
    t0 = time.monotonic()
    await asyncio.wait_for(server.close(), 5)
    assert time.monotonic() - t0 < 1.5
    assert not server.connections
    close, _ = await asyncio.wait_for(silent.read_until_close(), 5)
    assert close.close_code == 1001
    assert await asyncio.wait_for(silent.at_eof(), 5)
    silent.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_closes_clients_with_1001_and_exits_0(sig: signal.Signals) -> None:
    async with async_running_server("--close-timeout", "2", must_stay_up=False, ready_log='"listening"') as srv:
        url = f"{srv.url}/ws"
        clients = [await connect(url), await connect(url)]
        for ws in clients:  # both are really up: the signaling protocol answers
            await ws.send(PING_MSG)
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        t0 = time.monotonic()
        srv.proc.send_signal(sig)
        for ws in clients:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.code == 1001
            assert info.value.reason == "server shutting down"
        assert await srv.wait_async(5) == 0
        assert time.monotonic() - t0 < 3.0
    assert '"stopped"' in srv.log_text()


async def test_sigterm_shutdown_is_bounded_by_close_timeout() -> None:
    async with async_running_server("--close-timeout", "0.3", must_stay_up=False, ready_log='"listening"') as srv:
        silent = await RawClient.open(srv.port)  # completes the handshake, then never reads or answers
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert await srv.wait_async(5) == 0
        assert time.monotonic() - t0 < 2.5
        silent.close()


# ------------------------------------------------------------------------------------ the RFC sample handshake


async def test_rfc_sample_handshake_against_the_real_process() -> None:
    async with async_running_server(ready_log='"listening"') as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        writer.write(
            request_head(
                target="/ws",
                headers=[
                    ("Host", f"127.0.0.1:{srv.port}"),
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Key", RFC_KEY),
                    ("Sec-WebSocket-Version", "13"),
                ],
            )
        )
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.endswith(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
        fields = [tuple(line.split(b": ", 1)) for line in lines[1:]]
        assert (b"Sec-WebSocket-Accept", RFC_ACCEPT.encode()) in fields
        assert f"\r\nSec-WebSocket-Accept: {RFC_ACCEPT}\r\n".encode() in head
        names = [f[0].lower() for f in fields]
        assert names.count(b"sec-websocket-accept") == 1
        assert (b"Upgrade", b"websocket") in fields
        assert (b"Connection", b"Upgrade") in fields
        assert b"content-length" not in names
        # The connection is a WebSocket now: a close frame is answered with the same code, then EOF.
        client = RawClient(reader, writer)
        client.send(CLOSE, struct.pack("!H", 1000) + b"done")
        async with asyncio.timeout(5):
            frame = await client.read_frame()
            assert frame.opcode == CLOSE and frame.close_code == 1000
            assert await client.at_eof()
        writer.close()

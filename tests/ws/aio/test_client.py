"""The asyncio client (signaling.ws.aio.client) against our server over ws:// and wss://, and against fake
servers that misbehave in ways our own server never would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from signaling.app.echo import EchoApp
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.connection import State
from signaling.ws.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from signaling.ws.frames import Opcode, encode_frame
from tests.helpers.apps import ScriptedEchoApp
from tests.helpers.certs import CertPair, client_context, make_cert, server_context
from tests.helpers.inprocess import ws_url
from tests.helpers.wait import wait_until
from tests.ws.aio.helpers import read_frame
from tests.ws.helpers import RawFrame, frame, response_101

pytestmark = pytest.mark.timeout(30)


# ----------------------------------------------------------------------------------------- test servers


@pytest.fixture
async def scripted(start_server) -> tuple[ScriptedEchoApp, WebSocketServer]:
    app = ScriptedEchoApp()
    return app, await start_server(app)


FakeBehaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """``port = await fake_server(behaviour, rcvbuf=None)``: a hand-made server; ``behaviour(reader, writer, key)``
    runs after the client's request head was read (key: its Sec-WebSocket-Key). ``rcvbuf`` fixes the accepted
    sockets' receive buffer (no autotuning), so that a server that stops reading stalls its client soon."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(behaviour: FakeBehaviour, rcvbuf: int | None = None) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tasks.add(asyncio.current_task())  # type: ignore[arg-type]
            head = await reader.readuntil(b"\r\n\r\n")
            key = ""
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "sec-websocket-key":
                    key = value.strip()
            try:
                await behaviour(reader, writer, key)
            finally:
                writer.close()

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before listen: accepted sockets inherit it
        sock.bind(("127.0.0.1", 0))
        server = await asyncio.start_server(handle, sock=sock)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for task in tasks:
        task.cancel()
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    while await reader.read(65536):
        pass


# ------------------------------------------------------------------------------------------ basics


async def test_context_manager_send_recv_text_and_binary(echo_server: WebSocketServer) -> None:
    async with connect(ws_url(echo_server)) as ws:
        assert ws.state is State.OPEN
        assert ws.close_code is None and ws.close_reason is None
        await ws.send("hello ☃")
        assert await asyncio.wait_for(ws.recv(), 5) == "hello ☃"
        await ws.send(b"\x00\xffbinary")
        assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\xffbinary"
        await ws.send("")
        assert await asyncio.wait_for(ws.recv(), 5) == ""
        big = "x" * 60_000
        await ws.send(big)
        assert await asyncio.wait_for(ws.recv(), 5) == big
    assert ws.state.name == "CLOSED"
    assert ws.close_code == 1000


async def test_await_connect_without_context_manager(echo_server: WebSocketServer) -> None:
    ws = await connect(ws_url(echo_server))
    try:
        await ws.send("plain await")
        assert await asyncio.wait_for(ws.recv(), 5) == "plain await"
    finally:
        await ws.close()
    assert ws.close_code == 1000


async def test_fragments_are_one_message(echo_server: WebSocketServer) -> None:
    async with connect(ws_url(echo_server)) as ws:
        await ws.send_fragments(["frag", "men", "ted ☃"])
        assert await asyncio.wait_for(ws.recv(), 5) == "fragmented ☃"
        await ws.send_fragments([b"\x01", b"", b"\x02\x03"])
        assert await asyncio.wait_for(ws.recv(), 5) == b"\x01\x02\x03"
        with pytest.raises(ValueError):
            await ws.send_fragments([])
        with pytest.raises(TypeError):
            await ws.send_fragments(["text", b"bytes"])


async def test_ping_future_resolves(echo_server: WebSocketServer) -> None:
    async with connect(ws_url(echo_server)) as ws:
        waiter = await ws.ping()
        await asyncio.wait_for(waiter, 5)
        custom = await ws.ping(b"payload-123")
        await asyncio.wait_for(custom, 5)
        assert custom.done() and custom.exception() is None


async def test_concurrent_pings_all_resolve(echo_server: WebSocketServer) -> None:
    """Each ping() without data gets a payload of its own: when two shared one (a payload made from
    ``id(object())``, whose address is reused at once), the second overwrote the first's future, which never
    resolved."""
    async with connect(ws_url(echo_server)) as ws:
        waiters = await asyncio.gather(*(ws.ping() for _ in range(8)))
        await asyncio.wait_for(asyncio.gather(*waiters), 5)
        assert all(w.done() and w.exception() is None for w in waiters)
        await ws.send("after the pings")
        assert await asyncio.wait_for(ws.recv(), 5) == "after the pings"


async def test_a_ping_payload_already_awaited_is_refused_and_numbers_skip_it(echo_server: WebSocketServer) -> None:
    async with connect(ws_url(echo_server)) as ws:
        mine = await ws.ping(b"1")  # the payload the first automatic ping would use
        with pytest.raises(ValueError, match="already waiting"):
            await ws.ping(b"1")
        auto = await ws.ping()
        await asyncio.wait_for(asyncio.gather(mine, auto), 5)


async def test_a_ping_payload_over_125_bytes_is_refused_and_nothing_waits_for_it(
    echo_server: WebSocketServer,
) -> None:
    """5.5: a control frame's payload is 125 bytes at most. The refusal must leave nothing registered: a payload
    once refused was refused ever after as "already waiting"."""
    too_big = b"p" * 126
    async with connect(ws_url(echo_server)) as ws:
        for _ in range(2):
            with pytest.raises(ValueError, match="125"):
                await ws.ping(too_big)
        fits = await ws.ping(too_big[:125])
        await asyncio.wait_for(fits, 5)


async def test_subprotocol_negotiation(start_server) -> None:
    server = await start_server(EchoApp(subprotocols=("chat.v1", "chat.v2")))
    async with connect(ws_url(server), subprotocols=["chat.v2", "chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v1"  # the server's preference wins
    async with connect(ws_url(server)) as ws:
        assert ws.subprotocol is None


async def test_wss_with_a_custom_ssl_context(start_server, tmp_path: Path) -> None:
    pair: CertPair = make_cert(tmp_path, "client-test", serial=7)
    server = await start_server(EchoApp(), ssl=server_context(pair))
    async with connect(ws_url(server), ssl=client_context(pair)) as ws:
        await ws.send("over TLS")
        assert await asyncio.wait_for(ws.recv(), 5) == "over TLS"
        await ws.send(b"\x00" * 30_000)
        assert await asyncio.wait_for(ws.recv(), 5) == b"\x00" * 30_000
    assert ws.close_code == 1000
    # Not trusted by default (self-signed): the certificate is verified.
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(ws_url(server))
    # The name is checked too: a context that trusts the certificate but expects another host fails.
    other = make_cert(tmp_path, "other", serial=8)
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(ws_url(server), ssl=client_context(other))


async def test_url_validation() -> None:
    with pytest.raises(ValueError):
        connect("http://127.0.0.1:1/ws")
    with pytest.raises(ValueError):
        connect("ws:///nohost")
    with pytest.raises(ValueError):
        connect("ws://127.0.0.1:1/ws", ssl=ssl.create_default_context())


async def test_connection_refused_raises_oserror(unused_tcp_port: int) -> None:
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{unused_tcp_port}/ws", open_timeout=5)


async def test_a_cr_or_lf_in_a_header_fails_before_connecting(unused_tcp_port: int) -> None:
    """ValueError, not the OSError that connecting to the closed port would give: nothing was sent."""
    with pytest.raises(ValueError, match="CR or LF"):
        await connect(f"ws://127.0.0.1:{unused_tcp_port}/ws", extra_headers=[("X-A", "1\r\nX-Evil: 1")])


# ------------------------------------------------------------------------------- closing and close codes


async def test_async_iteration_ends_on_1000(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    _, server = scripted
    async with connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"send": ["one", "two", "three"], "close": [1000, "done"]}))
        received = [m async for m in ws]
        assert received == ["one", "two", "three"]
        assert ws.close_code == 1000
        assert ws.close_reason == "done"


async def test_async_iteration_raises_on_an_error_code(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    _, server = scripted
    async with connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"send": ["before"], "close": [1011, "boom"]}))
        received = []
        with pytest.raises(ConnectionClosed) as info:
            async for m in ws:
                received.append(m)
        assert received == ["before"]
        assert info.value.code == 1011
        assert info.value.reason == "boom"
        assert ws.close_code == 1011


async def test_close_code_and_reason_reach_the_server(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    app, server = scripted
    for code, reason in [(1000, ""), (1001, "going"), (3001, "bye"), (4999, "é" * 10)]:
        ws = await connect(ws_url(server))
        t0 = time.monotonic()
        await ws.close(code, reason)
        assert time.monotonic() - t0 < 1.0  # the server answered and closed TCP, no timeout involved
        closed = await asyncio.wait_for(app.closes.get(), 5)
        assert (closed.code, closed.reason, closed.by_peer) == (code, reason, True)
        assert ws.close_code == code  # the server echoes the code
        with pytest.raises(ConnectionClosed) as info:
            await ws.send("too late")
        assert info.value.code == code
        with pytest.raises(ConnectionClosed):
            await ws.ping()


async def test_app_close_from_a_message_handler_reaches_recv(
    scripted: tuple[ScriptedEchoApp, WebSocketServer],
) -> None:
    """An application that refuses what it was sent closes from its message handler (the signaling app does so
    with 1003 on a binary message); recv() raises that code and reason."""
    _, server = scripted
    async with connect(ws_url(server)) as ws:
        await ws.send(b"\x01\x02")
        assert await asyncio.wait_for(ws.recv(), 5) == b"\x01\x02"
        await ws.send(json.dumps({"close": [1003, "binary messages are not supported"]}))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.code == 1003
    assert "binary" in info.value.reason


@pytest.mark.parametrize("size", [1025, 4 << 20])
async def test_too_big_for_the_server_is_1009(start_server, size: int) -> None:
    server = await start_server(EchoApp(), max_message_size=1024)
    async with connect(ws_url(server)) as ws:
        await ws.send("x" * 1024)
        assert await asyncio.wait_for(ws.recv(), 5) == "x" * 1024
        # Even when megabytes the server will never read follow the header, its close frame gets through.
        await ws.send("x" * size)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.code == 1009


async def test_too_big_for_the_client_is_1009(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    app, server = scripted
    async with connect(ws_url(server), max_message_size=1000) as ws:
        await ws.send(json.dumps({"big": 1000}))
        assert await asyncio.wait_for(ws.recv(), 5) == "b" * 1000
        await ws.send(json.dumps({"big": 1001}))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.code == 1009  # our own code: we failed the connection
        assert info.value.sent_code == 1009
    assert (await asyncio.wait_for(app.closes.get(), 5)).code == 1009


async def test_server_shutdown_is_1001_and_ends_iteration_quietly(start_server) -> None:
    server = await start_server(EchoApp())
    a = await connect(ws_url(server))
    b = await connect(ws_url(server))
    await server.close()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(a.recv(), 5)
    assert info.value.code == 1001
    assert info.value.reason == "server shutting down"
    assert [m async for m in b] == []
    assert b.close_code == 1001


# ---------------------------------------------------------------------------------------- refused handshakes


async def test_handshake_refused_404(fake_server) -> None:
    async def not_found(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    port = await fake_server(not_found)
    with pytest.raises(InvalidStatus) as info:
        await connect(f"ws://127.0.0.1:{port}/not-the-ws-path")
    assert info.value.status == 404


async def test_handshake_refused_503_at_the_connection_limit(start_server) -> None:
    server = await start_server(EchoApp(), max_connections=1)
    async with connect(ws_url(server)):
        with pytest.raises(InvalidStatus) as info:
            await connect(ws_url(server))
        assert info.value.status == 503
        assert info.value.response.headers.get("Retry-After") == "5"


async def test_handshake_with_a_wrong_accept_is_refused(fake_server) -> None:
    async def wrong_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(response_101(key, accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
        await read_forever(reader, writer, key)

    port = await fake_server(wrong_accept)
    with pytest.raises(InvalidHandshake) as info:
        await connect(f"ws://127.0.0.1:{port}/")
    assert type(info.value) is InvalidHandshake
    assert "Accept" in str(info.value)
    assert info.value.response is not None and info.value.response.status == 101


async def test_open_timeout_raises_and_closes_the_socket(fake_server) -> None:
    client_gone = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        with contextlib.suppress(ConnectionError):  # EOF or reset: either way the client let go
            await read_forever(reader, writer, key)  # reads the request, never answers
        client_gone.set()

    port = await fake_server(silent)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await connect(f"ws://127.0.0.1:{port}/", open_timeout=0.3)
    assert time.monotonic() - t0 < 2.0
    # The half-open connection is not left behind: the server sees the client's socket go.
    await asyncio.wait_for(client_gone.wait(), 5)


# ---------------------------------------------------------------------------------- misbehaving servers


async def test_tcp_drop_without_close_frame_is_1006(fake_server) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(response_101(key) + encode_frame(Opcode.TEXT, b"hi"))
        await writer.drain()

    port = await fake_server(drop)
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        assert await asyncio.wait_for(ws.recv(), 5) == "hi"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.code == 1006
        assert ws.close_code == 1006


async def test_masked_frame_from_the_server_fails_with_1002(fake_server) -> None:
    frames: asyncio.Queue[RawFrame] = asyncio.Queue()

    async def masked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(response_101(key) + frame(Opcode.TEXT, b"hi", mask_key=bytes(4)))  # any key is one too many
        frames.put_nowait(await read_frame(reader))  # the client's close frame
        await read_forever(reader, writer, key)

    port = await fake_server(masked)
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.code == 1002
    close = await asyncio.wait_for(frames.get(), 5)
    assert (close.fin, close.opcode, close.masked) == (True, Opcode.CLOSE, True)
    assert close.close_code == 1002


async def test_close_is_bounded_when_the_server_never_answers(fake_server) -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(response_101(key))
        await read_forever(reader, writer, key)

    port = await fake_server(deaf)
    ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=0.3)
    t0 = time.monotonic()
    await ws.close(1000, "bye")
    assert time.monotonic() - t0 < 1.5
    assert ws.state is State.CLOSING or ws.state is State.CLOSED
    assert ws.close_code == 1006  # no close frame ever came back


async def test_server_ping_is_answered(fake_server) -> None:
    pongs: asyncio.Queue[RawFrame] = asyncio.Queue()

    async def pinger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(response_101(key) + encode_frame(Opcode.PING, b"ping"))
        pongs.put_nowait(await read_frame(reader))
        await read_forever(reader, writer, key)

    port = await fake_server(pinger)
    async with connect(f"ws://127.0.0.1:{port}/", close_timeout=0.3):
        pong = await asyncio.wait_for(pongs.get(), 5)
        assert (pong.fin, pong.opcode, pong.masked, pong.payload) == (True, Opcode.PONG, True, b"ping")


# ---------------------------------------------------------------------------------------- flow control


SENDERS = 6
#: More than the server's 16 KiB receive buffer and the client's send buffer (4 MiB at most, tcp_wmem) hold: the
#: first send pauses the transport, and every later one finds it paused.
BIG = "b" * (6 << 20)


def stalling_server(resume: asyncio.Event) -> FakeBehaviour:
    """A server that reads nothing after its 101 until ``resume`` is set, then reads everything."""

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        transport = cast(asyncio.Transport, writer.transport)
        transport.pause_reading()
        writer.write(response_101(key))
        await resume.wait()
        transport.resume_reading()
        await read_forever(reader, writer, key)

    return stall


async def blocked_senders(ws: ClientConnection) -> list[asyncio.Task[None]]:
    """SENDERS tasks each sending BIG, returned once every one of them waits for the transport to drain."""
    started = [asyncio.Event() for _ in range(SENDERS)]

    async def send(i: int) -> None:
        started[i].set()  # in the same step as send()'s write and its wait for the drain
        await ws.send(BIG)

    tasks = [asyncio.create_task(send(i)) for i in range(SENDERS)]
    for event in started:
        await event.wait()
    assert not any(task.done() for task in tasks), "the transport never paused: the test proves nothing"
    return tasks


async def test_concurrent_senders_all_resume_after_a_write_pause(fake_server) -> None:
    """Each sender waits for the drain in a queue of its own: with one shared slot, 5 of 6 hung forever."""
    resume = asyncio.Event()
    port = await fake_server(stalling_server(resume), rcvbuf=16384)
    async with connect(f"ws://127.0.0.1:{port}/", close_timeout=0.3) as ws:
        tasks = await blocked_senders(ws)
        resume.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def test_senders_waiting_for_a_drain_raise_connection_closed_after_close(fake_server) -> None:
    resume = asyncio.Event()  # never set: the server stays deaf
    port = await fake_server(stalling_server(resume), rcvbuf=16384)
    ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=0.3)
    tasks = await blocked_senders(ws)
    await ws.close()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert all(isinstance(r, ConnectionClosed) for r in results), results


async def test_unread_messages_stop_the_socket_reads(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    """A client that does not call recv() buffers a bounded number of messages; the rest waits in TCP."""
    _, server = scripted
    messages = [f"{i:05d}".ljust(4000, "m") for i in range(400)]  # 1.6 MB
    async with connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"flood": [400, 4000]}))
        protocol: Any = ws._p
        # No event for this internal state: poll it.
        await wait_until(
            lambda: protocol.reading_paused,
            timeout=5,
            interval=0.005,
            message=lambda: f"reading never paused ({len(protocol.messages)} messages queued)",
        )
        queued = len(protocol.messages)
        assert queued < len(messages)
        assert queued <= 64 + 256 * 1024 // 4000 + 1  # the high mark plus at most one read's worth
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in messages]
        assert got == messages
        assert not protocol.reading_paused

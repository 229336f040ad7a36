"""The asyncio server over real loopback sockets: the connection limit, shutdown (programmatic, and on a signal to
the `signaling serve --echo` process), and the RFC 6455 sample handshake against that process.

Flow control is in test_server_backpressure.py, timers in test_server_timeouts.py. Raw-socket clients
(tests/ws/aio/helpers.py) are used where the exact bytes matter or a client must misbehave; server-side state,
which announces nothing, is polled through tests/helpers/wait.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from signaling.app.echo import EchoApp
from signaling.ws.aio.client import connect
from signaling.ws.aio.server import Later
from signaling.ws.exceptions import ConnectionClosed, InvalidStatus
from signaling.ws.frames import Opcode
from signaling.ws.http11 import Request, Response
from tests.helpers import async_running_server
from tests.helpers.apps import ScriptedEchoApp
from tests.helpers.inprocess import ws_url
from tests.helpers.wait import wait_until
from tests.ws.aio.helpers import RawClient, read_all, server_side
from tests.ws.helpers import RFC_ACCEPT, close_body

pytestmark = pytest.mark.timeout(30)


# -------------------------------------------------------------------------------------- connection limit


async def test_max_connections_refuses_upgrades_with_503_but_serves_http(start_server) -> None:
    server = await start_server(EchoApp(), max_connections=2)
    url = ws_url(server)
    async with connect(url) as first, connect(url) as second:
        with pytest.raises(InvalidStatus) as info:
            await connect(url)
        assert info.value.status == 503
        # The exact response, from a raw client.
        raw = await RawClient.open(server.port, upgrade=False)
        raw.send_request(server.port)
        response = await read_all(raw.reader)
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"\r\nRetry-After: " in head
        assert body == b"server is at its connection limit, try again later\n"
        # Plain HTTP is not an upgrade and is not counted: the app answers it (the echo app: 426).
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await read_all(reader)).startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
        writer.close()
        # The two open connections still work.
        for ws in (first, second):
            await ws.send("still open")
            assert await asyncio.wait_for(ws.recv(), 5) == "still open"
        await second.close()
        await wait_until(
            lambda: server.open_count == 1,
            timeout=5,
            interval=0.005,
            message=lambda: f"open_count is {server.open_count}",
        )
        async with connect(url) as third:
            await third.send("third")
            assert await asyncio.wait_for(third.recv(), 5) == "third"


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


@pytest.mark.parametrize(
    ("who", "by_peer"), [pytest.param("client", True, id="client-closes"), pytest.param("server", False, id="drain")]
)
async def test_the_handler_learns_who_started_the_close(start_server, who: str, by_peer: bool) -> None:
    """The client's close frame says 1000 both times; only by_peer tells a client that left on purpose from one
    that echoed 1000 to the server's 1001 (aiohttp's client does)."""
    app = ScriptedEchoApp()
    server = await start_server(app)
    client = await RawClient.open(server.port)
    if who == "server":
        client.send_text(json.dumps({"close": [1001, "drain"]}))
        close = await asyncio.wait_for(client.read_frame(), 5)
        assert close.close_code == 1001
    client.send(Opcode.CLOSE, close_body(1000))
    if who == "client":
        echo = await asyncio.wait_for(client.read_frame(), 5)
        assert echo.close_code == 1000
    assert await asyncio.wait_for(client.at_eof(), 5)
    client.close()
    closed = await asyncio.wait_for(app.closes.get(), 5)
    assert (closed.code, closed.by_peer) == (1000, by_peer)


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
    async with async_running_server(
        "--echo", "--close-timeout", "2", must_stay_up=False, ready_log='"listening"'
    ) as srv:
        url = f"{srv.url}/ws"
        clients = [await connect(url), await connect(url)]
        for ws in clients:  # both are really up: the echo answers
            await ws.send("up")
            assert await asyncio.wait_for(ws.recv(), 5) == "up"
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
    async with async_running_server(
        "--echo", "--close-timeout", "0.3", must_stay_up=False, ready_log='"listening"'
    ) as srv:
        silent = await RawClient.open(srv.port)  # completes the handshake, then never reads or answers
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert await srv.wait_async(5) == 0
        assert time.monotonic() - t0 < 2.5
        silent.close()


# ------------------------------------------------------------------------------------ the RFC sample handshake


async def test_rfc_sample_handshake_against_the_real_process() -> None:
    async with async_running_server("--echo", ready_log='"listening"') as srv:
        client = await RawClient.open(srv.port, upgrade=False)
        head = await client.handshake(srv.port)
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
        client.send(Opcode.CLOSE, close_body(1000, b"done"))
        async with asyncio.timeout(5):
            frame = await client.read_frame()
            assert frame.opcode == Opcode.CLOSE and frame.close_code == 1000
            assert await client.at_eof()
        client.close()


# -------------------------------------------------------------------------------------- answers given later


class LaterApp:
    """Answers every request ``Later``, with a future the test completes (or fails)."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[asyncio.Future[Response]] = asyncio.Queue()

    def handle_request(self, request: Request, peer: tuple[str, int] | None) -> Later:
        answer: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.answers.put_nowait(answer)
        return Later(answer)


async def get(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /later HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return reader, writer


async def test_a_later_answer_is_sent_when_ready_and_a_failure_is_a_500(start_server) -> None:
    app = LaterApp()
    server = await start_server(app)
    reader, writer = await get(server.port)
    answer = await asyncio.wait_for(app.answers.get(), 5)
    answer.set_result(Response(200, body=b"ready"))
    response = await read_all(reader)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in response
    assert response.endswith(b"\r\n\r\nready")
    writer.close()
    reader, writer = await get(server.port)
    (await asyncio.wait_for(app.answers.get(), 5)).set_exception(RuntimeError("boom"))
    assert (await read_all(reader)).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    writer.close()


async def test_a_later_answer_is_dropped_when_the_client_has_gone(start_server) -> None:
    app = LaterApp()
    server = await start_server(app)
    _, writer = await get(server.port)
    answer = await asyncio.wait_for(app.answers.get(), 5)
    ended = asyncio.Event()
    answer.add_done_callback(lambda _: ended.set())
    writer.close()
    await asyncio.wait_for(ended.wait(), 5)
    assert answer.cancelled() and not server.connections  # the connection is gone: nobody waits for its answer

"""Interoperability with the `websockets` library, an implementation nobody here wrote.

(a) its client against our server (the echo app, scripted where a test needs more: tests/helpers/apps.py); (b) our
client against its server. Compression is off on its side (we never negotiate extensions), everything else is left
at its defaults unless a test says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection as WsServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import ConnectionClosedError as WsConnectionClosedError
from websockets.exceptions import ConnectionClosedOK as WsConnectionClosedOK

from signaling.app.echo import EchoApp
from signaling.ws.aio.client import connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.exceptions import ConnectionClosed, InvalidStatus
from tests.helpers.apps import ScriptedEchoApp
from tests.helpers.inprocess import ws_url
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5


@pytest.fixture
async def scripted(start_server) -> tuple[ScriptedEchoApp, WebSocketServer]:
    app = ScriptedEchoApp()
    return app, await start_server(app, max_message_size=1 << 20)


# ============================================================ (a) the websockets client against our server


async def test_ws_client_text_and_binary(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    _, server = scripted
    async with ws_connect(ws_url(server), compression=None) as ws:
        messages: list[str | bytes] = [
            "hello",
            "",
            "ünïcödé ☃ 𝄞",
            "x" * 70_000,
            b"",
            b"\x00\xff",
            bytes(range(256)) * 2000,
        ]
        for message in messages:
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message


async def test_ws_client_many_messages_in_flight_keep_their_order(
    scripted: tuple[ScriptedEchoApp, WebSocketServer],
) -> None:
    _, server = scripted
    async with ws_connect(ws_url(server), compression=None) as ws:
        for i in range(500):
            await ws.send(f"message {i}")
        for i in range(500):
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == f"message {i}"


async def test_ws_client_fragmented_messages(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    _, server = scripted

    async def binary_fragments() -> AsyncIterator[bytes]:
        for chunk in (b"\x01" * 10, b"", b"\x02" * 70_000, b"\x03"):
            yield chunk

    async with ws_connect(ws_url(server), compression=None) as ws:
        await ws.send(["frag", "men", "ted ", "☃"])
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "fragmented ☃"
        # A multi-byte character split across fragments: valid as a whole message.
        snowman = "☃".encode()
        await ws.send([b"a" + snowman[:1], snowman[1:]], text=True)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "a☃"
        await ws.send(binary_fragments())
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x01" * 10 + b"\x02" * 70_000 + b"\x03"


async def test_ws_client_pings(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    _, server = scripted
    async with ws_connect(ws_url(server), compression=None) as ws:
        for payload in (None, b"", b"abc", b"x" * 125):
            pong_waiter = await ws.ping(payload)
            latency = await asyncio.wait_for(pong_waiter, TIMEOUT)
            assert latency >= 0


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, ""), (1000, "done"), (1001, "leaving"), (3000, "app"), (4999, "last private")]
)
async def test_ws_client_close_codes_are_echoed(
    scripted: tuple[ScriptedEchoApp, WebSocketServer], code: int, reason: str
) -> None:
    app, server = scripted
    async with ws_connect(ws_url(server), compression=None) as ws:
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hi"
        await asyncio.wait_for(ws.close(code, reason), TIMEOUT)
        assert ws.close_code == code  # what our server sent back
        assert ws.state is websockets.protocol.State.CLOSED
    closed = await asyncio.wait_for(app.closes.get(), TIMEOUT)
    assert (closed.code, closed.reason, closed.by_peer) == (code, reason, True)


async def test_our_server_closes_1009_on_oversize(start_server) -> None:
    server = await start_server(EchoApp(), max_message_size=1024)
    async with ws_connect(ws_url(server), compression=None) as ws:
        await ws.send("x" * 1024)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "x" * 1024
        await ws.send("x" * 1025)
        with pytest.raises(WsConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    # Fragments that add up to too much are refused as well.
    async with ws_connect(ws_url(server), compression=None) as ws:
        await ws.send(["x" * 600, "x" * 600])
        with pytest.raises(WsConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_our_server_closes_1007_on_invalid_utf8(echo_server: WebSocketServer) -> None:
    async with ws_connect(ws_url(echo_server), compression=None) as ws:
        await ws.send(b"ok \xff\xfe", text=True)
        with pytest.raises(WsConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1007


async def test_our_app_closing_from_a_message_handler(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    """A close the application starts while it handles a message (the signaling app does so with 1003 when it is
    sent binary)."""
    _, server = scripted
    async with ws_connect(ws_url(server), compression=None) as ws:
        await ws.send(b"\x00binary")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00binary"
        await ws.send(json.dumps({"close": [1003, "binary messages are not supported"]}))
        with pytest.raises(WsConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1003
    assert "binary" in info.value.rcvd.reason


async def test_our_server_closing_from_its_timer(start_server) -> None:
    """A close the server starts on its own, outside any read: the idle timeout."""
    server = await start_server(EchoApp(), idle_timeout=0.2, ping_interval=0)
    async with ws_connect(ws_url(server), compression=None) as ws:
        with pytest.raises(WsConnectionClosedOK) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "idle timeout")


async def test_our_server_shutdown_is_1001(start_server) -> None:
    server = await start_server(EchoApp())
    async with ws_connect(ws_url(server), compression=None) as ws:
        await server.close()
        with pytest.raises(WsConnectionClosedOK) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "server shutting down")


async def test_ws_client_subprotocol(start_server) -> None:
    server = await start_server(EchoApp(subprotocols=("chat.v1",)))
    async with ws_connect(ws_url(server), compression=None, subprotocols=["chat.v0", "chat.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v1"


async def test_ws_client_compression_offer_is_declined(echo_server: WebSocketServer) -> None:
    """With its default permessage-deflate offer, the websockets client still connects (no extension chosen)."""
    async with ws_connect(ws_url(echo_server)) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send("uncompressed")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "uncompressed"


async def test_ws_clients_through_a_relay(scripted: tuple[ScriptedEchoApp, WebSocketServer]) -> None:
    """Messages one connection's read writes to another (as the signaling relay does), both ways."""
    _, server = scripted
    async with (
        ws_connect(ws_url(server, "/interop-room"), compression=None) as alice,
        ws_connect(ws_url(server, "/interop-room"), compression=None) as bob,
        ws_connect(ws_url(server, "/another-room"), compression=None) as carol,
    ):
        offer = json.dumps({"type": "offer", "sdp": "v=0\r\n"})
        await alice.send(json.dumps({"relay": offer, "send": ["relayed"]}))
        assert await asyncio.wait_for(alice.recv(), TIMEOUT) == "relayed"
        assert await asyncio.wait_for(bob.recv(), TIMEOUT) == offer
        await bob.send(json.dumps({"relay": "answer ☃"}))
        assert await asyncio.wait_for(alice.recv(), TIMEOUT) == "answer ☃"
        # Nothing reached the other path: the next thing carol hears is her own echo.
        await carol.send("only mine")
        assert await asyncio.wait_for(carol.recv(), TIMEOUT) == "only mine"


# ============================================================ (b) our client against the websockets server

Handler = Callable[[WsServerConnection], Awaitable[None]]


@pytest.fixture
async def ws_server() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``url = await ws_server(handler, **serve_kwargs)``: a `websockets` server on 127.0.0.1."""
    servers: list[Any] = []

    async def start(handler: Handler, **kwargs: Any) -> str:
        kwargs.setdefault("compression", None)
        server = await ws_serve(handler, "127.0.0.1", 0, **kwargs)
        servers.append(server)
        port = next(iter(server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/"

    yield start
    for server in servers:
        server.close()
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)


async def echo(ws: WsServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def test_our_client_text_and_binary(ws_server) -> None:
    async with connect(await ws_server(echo, max_size=1 << 21), max_message_size=1 << 21) as ws:
        messages: list[str | bytes] = ["hello", "", "ünïcödé ☃ 𝄞", b"\x00\xff", b"", bytes(range(256)) * 4096]
        for message in messages:
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message


async def test_our_client_fragments_to_websockets(ws_server) -> None:
    async with connect(await ws_server(echo), max_message_size=1 << 20) as ws:
        await ws.send_fragments(["a", "b", "c☃"])
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "abc☃"
        await ws.send_fragments([b"\x00" * 70_000, b"\x01"])
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00" * 70_000 + b"\x01"


async def test_fragmented_messages_from_websockets(ws_server) -> None:
    async def fragments(ws: WsServerConnection) -> None:
        async for command in ws:
            if command == "text":
                await ws.send(["al", "pha ", "☃"])
            elif command == "binary":
                await ws.send([b"\x00", b"", b"\x01\x02" * 40_000])
            elif command == "stream":

                async def parts() -> AsyncIterator[str]:
                    for i in range(50):
                        yield f"{i},"

                await ws.send(parts())

    async with connect(await ws_server(fragments), max_message_size=1 << 20) as ws:
        await ws.send("text")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "alpha ☃"
        await ws.send("binary")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00" + b"\x01\x02" * 40_000
        await ws.send("stream")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "".join(f"{i}," for i in range(50))


async def test_websockets_server_pings_are_answered(ws_server) -> None:
    async def pinger(ws: WsServerConnection) -> None:
        for payload in (b"", b"srv", b"p" * 125):
            pong = await ws.ping(payload)
            await asyncio.wait_for(pong, TIMEOUT)
        await ws.send("3 pongs received")
        await ws.wait_closed()

    async with connect(await ws_server(pinger)) as ws:
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "3 pongs received"


async def test_websockets_server_keepalive_keeps_our_client(ws_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="websockets.server")  # it logs each frame: "> PING ...", "< PONG ..."

    def logged(prefix: str) -> int:
        return sum(r.getMessage().startswith(prefix) for r in caplog.records)

    async with connect(await ws_server(echo, ping_interval=0.05, ping_timeout=0.2)) as ws:
        # Eight keepalive pings answered, 0.35 s from first to last: more than the ping timeout, so without our
        # pongs the server would have closed the connection before the last ping.
        await wait_until(
            lambda: logged("< PONG") >= 8,
            timeout=TIMEOUT,
            message=lambda: f"the server sent {logged('> PING')} pings and got {logged('< PONG')} pongs",
        )
        await ws.send("still open")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still open"


async def test_our_client_pings_websockets(ws_server) -> None:
    async with connect(await ws_server(echo)) as ws:
        await asyncio.wait_for(await ws.ping(b"client"), TIMEOUT)
        await asyncio.wait_for(await ws.ping(), TIMEOUT)


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, "normal bye"), (1001, "going away"), (1011, "internal oops"), (4000, "custom")]
)
async def test_websockets_server_close_codes(ws_server, code: int, reason: str) -> None:
    async def closer(ws: WsServerConnection) -> None:
        await ws.recv()
        await ws.send("closing now")
        await ws.close(code, reason)

    async with connect(await ws_server(closer)) as ws:
        await ws.send("go")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "closing now"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert (info.value.code, info.value.reason) == (code, reason)
        assert (ws.close_code, ws.close_reason) == (code, reason)
    # Iterating: normal closures end the loop quietly, others raise.
    async with connect(await ws_server(closer)) as ws:
        await ws.send("go")
        if code in (1000, 1001):
            assert [m async for m in ws] == ["closing now"]
        else:
            with pytest.raises(ConnectionClosed) as info:
                async for _ in ws:
                    pass
            assert info.value.code == code


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "tab closed"), (3001, "bye"), (4999, "é" * 20)])
async def test_our_client_close_seen_by_websockets(ws_server, code: int, reason: str) -> None:
    seen: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()

    async def recorder(ws: WsServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except WsConnectionClosed:
            pass
        seen.set_result((ws.close_code, ws.close_reason))

    async with connect(await ws_server(recorder)) as ws:
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hi"
        await asyncio.wait_for(ws.close(code, reason), TIMEOUT)
        assert ws.close_code == code  # websockets echoes the code
    assert await asyncio.wait_for(seen, TIMEOUT) == (code, reason)


async def test_websockets_server_refuses_oversize_with_1009(ws_server) -> None:
    async with connect(await ws_server(echo, max_size=1000)) as ws:
        await ws.send("x" * 1001)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.code == 1009


async def test_our_client_refuses_oversize_from_websockets_with_1009(ws_server) -> None:
    seen: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def big(ws: WsServerConnection) -> None:
        await ws.send("y" * 2000)
        with contextlib.suppress(WsConnectionClosed):
            await ws.recv()
        seen.set_result(ws.close_code)

    async with connect(await ws_server(big), max_message_size=1000) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.code == 1009
    assert await asyncio.wait_for(seen, TIMEOUT) == 1009


async def test_our_client_subprotocol_with_websockets(ws_server) -> None:
    async def proto(ws: WsServerConnection) -> None:
        await ws.send(ws.subprotocol or "none")
        await ws.wait_closed()

    async with connect(await ws_server(proto, subprotocols=["chat.v2", "chat.v1"]), subprotocols=["chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v1"
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "chat.v1"


async def test_websockets_server_refusing_the_handshake(ws_server) -> None:
    def refuse(connection: Any, request: Any) -> Any:
        return connection.respond(HTTPStatus.FORBIDDEN, "not you\n")

    with pytest.raises(InvalidStatus) as info:
        await connect(await ws_server(echo, process_request=refuse))
    assert info.value.status == 403

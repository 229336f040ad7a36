"""The server API over real sockets (README, "Your backend: API and webhooks"): its key, the throttle that never
locks out the right key, the listings and the removals, on one node and across two nodes of one redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from signaling.app.api import API_PREFIX
from signaling.app.settings import Settings
from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.facts import REMOVED_CLOSE_CODE
from signaling.protocol.models import RelayedMessage
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.exceptions import ConnectionClosed

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
KEY = "k" * 40
AUTH = {"Authorization": "Bearer " + KEY}
STEP = 5.0


def base(server: WebSocketServer) -> str:
    return f"http://127.0.0.1:{server.port}{API_PREFIX}"


def ws(server: WebSocketServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


@contextlib.asynccontextmanager
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=STEP)) as session:
        yield session


async def call(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with session.request(method, url, headers=AUTH if headers is None else headers) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body, response


async def test_without_a_key_there_is_no_api(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with http() as session:
        for method in ("GET", "DELETE", "POST"):
            assert (await call(session, method, base(server) + "rooms"))[0] == 404


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key must be at least 32"):
        Settings.model_validate({"api_key": "short"})


async def test_a_missing_or_wrong_key_is_a_401_and_a_right_one_always_works(start_signaling: ServerFactory) -> None:
    server = await start_signaling(api_key=KEY, auth_max_failures=3)
    url = base(server) + "rooms"
    async with http() as session:
        wrong = [{}, {"Authorization": "Bearer " + "x" * 40}, {"Authorization": KEY}]
        for headers in wrong:
            status, _, response = await call(session, "GET", url, headers)
            assert status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        status, _, response = await call(session, "GET", url, wrong[1])
        assert status == 429 and int(response.headers["Retry-After"]) >= 1
        status, body, _ = await call(session, "GET", url)  # the same address, the right key
        assert (status, body) == (200, {"rooms": [], "next": None})
        assert (await call(session, "GET", url, {"Authorization": "bearer " + KEY}))[0] == 200  # any case


async def test_unknown_routes_methods_and_bad_limits(start_signaling: ServerFactory) -> None:
    server = await start_signaling(api_key=KEY)
    async with http() as session:
        assert (await call(session, "GET", base(server) + "nothing"))[0] == 404
        assert (await call(session, "GET", base(server) + "rooms/nowhere"))[0] == 404
        assert (await call(session, "PUT", base(server) + "rooms"))[0] == 405
        for limit in ("0", "10001", "x"):
            assert (await call(session, "GET", base(server) + "rooms?limit=" + limit))[0] == 400


async def rooms_and_roster(one: WebSocketServer, other: WebSocketServer) -> None:
    """Peers in two rooms through ``one`` and ``other``: each lists them all."""
    async with (
        SignalingClient.connect(ws(one)) as a,
        SignalingClient.connect(ws(other)) as b,
        SignalingClient.connect(ws(other)) as c,
        http() as session,
    ):
        wa = await a.join("a-room", name="a", meta={"role": "host"})
        wb = await b.join("a-room", name="b")
        await c.join("z")
        for server in (one, other):
            status, body, _ = await call(session, "GET", base(server) + "rooms")
            assert status == 200 and body == {
                "rooms": [{"room": "a-room", "peers": 2, "seq": 3}, {"room": "z", "peers": 1, "seq": 2}],
                "next": None,
            }
            status, body, _ = await call(session, "GET", base(server) + "rooms?limit=1")
            assert body == {"rooms": [{"room": "a-room", "peers": 2, "seq": 3}], "next": "a-room"}
            status, body, _ = await call(session, "GET", base(server) + "rooms?limit=1&after=a-room")
            assert body["rooms"] == [{"room": "z", "peers": 1, "seq": 2}]
            status, body, _ = await call(session, "GET", base(server) + "rooms/a-room")
            assert status == 200 and body == {
                "room": "a-room",
                "seq": 3,  # started, a joined, b joined: events up to 3 are in this snapshot
                "peers": [
                    {"id": wa.peer, "name": "a", "meta": {"role": "host"}, "connected": True},
                    {"id": wb.peer, "name": "b", "meta": None, "connected": True},
                ],
            }


async def test_rooms_and_their_peers_on_one_node(start_signaling: ServerFactory) -> None:
    server = await start_signaling(api_key=KEY)
    await rooms_and_roster(server, server)


async def test_rooms_and_their_peers_across_two_nodes(
    start_signaling: ServerFactory, redis_settings: dict[str, str]
) -> None:
    one = await start_signaling(api_key=KEY, **redis_settings)
    other = await start_signaling(api_key=KEY, **redis_settings)
    async with asyncio.timeout(4 * STEP):
        await rooms_and_roster(one, other)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(STEP):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def join(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "join", "room": "r", **fields}))
    welcome = await recv(ws)
    assert welcome["type"] == "welcome", welcome
    return welcome


async def closed_as_removed(ws: ClientConnection) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await recv(ws)
    assert (closed.value.code, closed.value.reason) == (REMOVED_CLOSE_CODE, "removed")


async def removals(one: WebSocketServer, other: WebSocketServer) -> None:
    """A peer connected to ``one`` removed through ``other``, then the whole room."""
    async with connect(ws(one)) as victim, connect(ws(other)) as bob, http() as session:
        gone = await join(victim, resumable=True)
        stays = await join(bob, resumable=True)
        assert (await recv(victim))["type"] == "peer-joined"
        status, _, _ = await call(session, "DELETE", base(other) + f"rooms/r/peers/{gone['peer']}")
        assert status == 204
        await closed_as_removed(victim)
        left = await recv(bob)
        assert (left["type"], left["peer"]) == ("peer-left", gone["peer"])
        _, body, _ = await call(session, "GET", base(one) + "rooms/r")
        assert [p["id"] for p in body["peers"]] == [stays["peer"]]
        assert (await call(session, "DELETE", base(one) + f"rooms/r/peers/{gone['peer']}"))[0] == 404
        assert (await call(session, "DELETE", base(one) + f"rooms/elsewhere/peers/{stays['peer']}"))[0] == 404
        async with connect(ws(one)) as again, connect(ws(one)) as ghost:
            fresh = await join(again, resume=gone["resume"], last_seq=0)  # the session is over: no resume
            assert fresh["resumed"] is False and fresh["peer"] != gone["peer"]
            ghostly = await join(ghost, resumable=True)
            await ghost.close(1001)  # a drop: its session waits in its grace period, connected nowhere
            assert (await call(session, "DELETE", base(other) + "rooms/r"))[0] == 204
            await closed_as_removed(bob)
            await closed_as_removed(again)
            assert (await call(session, "GET", base(one) + "rooms/r"))[0] == 404
            assert (await call(session, "DELETE", base(one) + "rooms/r"))[0] == 404
            async with connect(ws(other)) as back:
                fresh = await join(back, resume=ghostly["resume"], last_seq=0)
                assert fresh["resumed"] is False


async def test_removing_peers_on_one_node(start_signaling: ServerFactory) -> None:
    server = await start_signaling(api_key=KEY)
    await removals(server, server)


async def test_removing_peers_across_two_nodes(start_signaling: ServerFactory, redis_settings: dict[str, str]) -> None:
    one = await start_signaling(api_key=KEY, **redis_settings)
    other = await start_signaling(api_key=KEY, **redis_settings)
    async with asyncio.timeout(4 * STEP):
        await removals(one, other)


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    headers = {**AUTH, "Content-Type": "application/json"}
    async with session.post(url, data=body, headers=headers) as response:
        json_body = response.content_type == "application/json"
        return response.status, await response.json() if json_body else await response.text()


async def nothing_pending(ws: ClientConnection) -> None:
    """The next message is the pong of a ping sent now: nothing else was on its way."""
    await ws.send(json.dumps({"type": "ping"}))
    assert await recv(ws) == {"type": "pong"}


async def messages(one: WebSocketServer, other: WebSocketServer) -> None:
    """Messages from the backend, sent through ``other``, to peers on ``one`` and ``other``."""
    async with connect(ws(one)) as a, connect(ws(other)) as b, http() as session:
        wa = await join(a)
        await join(b, resumable=True)
        assert (await recv(a))["type"] == "peer-joined"
        url = base(other) + "rooms/r/messages"
        assert await post(session, url, b'{"data": {"hello": [1, "\\u00e9"]}}') == (202, {"delivered": 2})
        sent = {"type": "message", "from": "server", "data": {"hello": [1, "é"]}}
        assert await recv(a) == sent
        assert await recv(b) == {**sent, "seq": 1}  # numbered (and kept) as a peer's would be
        assert await post(session, url, json.dumps({"data": None, "to": wa["peer"]}).encode()) == (
            202,
            {"delivered": 1},
        )
        assert await recv(a) == {"type": "message", "from": "server", "data": None}
        await nothing_pending(b)
        assert (await post(session, url, json.dumps({"data": 1, "to": "nobody"}).encode()))[0] == 404
        assert (await post(session, base(one) + "rooms/nowhere/messages", b'{"data": 1}'))[0] == 404
        for bad in (b"not json", b"[]", b'{"to": "x"}', b'{"data": 1, "to": 3}', b'{"data": NaN}', b"\xff"):
            assert (await post(session, url, bad))[0] == 400, bad
        assert (await call(session, "GET", url))[0] == 405
        status, _ = await post(session, url, json.dumps({"data": "x" * 70_000}).encode())
        assert status == 413
        await nothing_pending(a)


async def test_messages_from_the_backend_on_one_node(start_signaling: ServerFactory) -> None:
    server = await start_signaling(api_key=KEY)
    await messages(server, server)


async def test_messages_from_the_backend_across_two_nodes(
    start_signaling: ServerFactory, redis_settings: dict[str, str]
) -> None:
    one = await start_signaling(api_key=KEY, **redis_settings)
    other = await start_signaling(api_key=KEY, **redis_settings)
    async with asyncio.timeout(4 * STEP):
        await messages(one, other)


async def test_a_chunked_body_is_refused_with_411(start_signaling: ServerFactory) -> None:
    server = await start_signaling(api_key=KEY)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /api/v1/rooms/r/messages HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    async with asyncio.timeout(STEP):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 411 Length Required\r\n")


async def test_the_python_client_reads_the_backend_and_stops_after_a_removal(start_signaling: ServerFactory) -> None:
    server = await start_signaling(api_key=KEY)
    async with SignalingClient.connect(ws(server)) as client, http() as session:
        welcome = await client.join("r")
        assert await post(session, base(server) + "rooms/r/messages", b'{"data": "hi"}') == (202, {"delivered": 1})
        message = await client.expect(RelayedMessage)
        assert (message.from_, message.data) == ("server", "hi")
        assert (await call(session, "DELETE", base(server) + f"rooms/r/peers/{welcome.peer}"))[0] == 204
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.code == REMOVED_CLOSE_CODE and client.reconnects == 0  # final: no resume tried

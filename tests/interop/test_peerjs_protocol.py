"""The PeerJS endpoint over real loopback sockets, message by message, against what peers/peerjs-server does (its
webSocketServer, messageHandler, messagesExpire and api, read from its source): OPEN first, ID-TAKEN and a close
while the holder keeps the id, the same token taking the id over, src set by the server, queued messages
delivered on OPEN in order or one EXPIRE per sender, LEAVE never queued, HEARTBEAT unanswered, unknown types
ignored, the original's ERROR texts, and the HTTP API (id, peers, CORS); on one node and across two."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from signaling.app.webhooks import new_secret
from signaling.rooms.auth import RoomTokens
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.exceptions import ConnectionClosed, InvalidStatus
from tests.app.test_api import KEY, base, call, http
from tests.helpers.wait import wait_until
from tests.helpers.webhook_receiver import receiving

pytestmark = pytest.mark.timeout(30)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
STEP = 5.0
SECRET = "s" * 40


def socket_url(server: WebSocketServer, peer_id: str, token: str = "tok", key: str = "peerjs") -> str:
    return f"ws://127.0.0.1:{server.port}/peerjs/peerjs?key={key}&id={peer_id}&token={token}&version=1.5.4"


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(STEP):
        data = json.loads(await ws.recv())
    assert isinstance(data, dict)
    return data


async def closed(ws: ClientConnection) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(STEP):
            while True:
                await ws.recv()
    return info.value


class Peers:
    """PeerJS sockets opened by a test, closed at its end."""

    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []

    async def raw(self, server: WebSocketServer, peer_id: str, token: str = "tok", **kw: Any) -> ClientConnection:
        ws = await connect(socket_url(server, peer_id, token, **kw))
        self.sockets.append(ws)
        return ws

    async def open(self, server: WebSocketServer, peer_id: str, token: str = "tok", **kw: Any) -> ClientConnection:
        ws = await self.raw(server, peer_id, token, **kw)
        assert await recv(ws) == {"type": "OPEN"}  # always the first message
        return ws


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    opened = Peers()
    yield opened
    for ws in opened.sockets:
        await ws.close()


async def test_open_first_then_each_type_relayed_with_src_set_by_the_server(
    start_signaling: ServerFactory, peers: Peers
) -> None:
    server = await start_signaling()
    a, b = await peers.open(server, "alice"), await peers.open(server, "bob")
    payload = {"sdp": {"type": "offer", "sdp": "v=0"}, "type": "media", "connectionId": "mc_1", "n": [1, 2.5]}
    for kind in ("OFFER", "ANSWER", "CANDIDATE", "LEAVE", "EXPIRE"):
        await a.send(json.dumps({"type": kind, "src": "mallory", "dst": "bob", "payload": payload, "extra": 1}))
        got = await b.recv()
        # The original's fields, in its order: type, src (the sender's id, whatever it claimed), dst, payload.
        assert json.loads(got) == {"type": kind, "src": "alice", "dst": "bob", "payload": payload}
        assert list(json.loads(got)) == ["type", "src", "dst", "payload"]
    await b.send(json.dumps({"type": "ANSWER", "dst": "alice"}))  # no payload: none relayed
    assert await recv(a) == {"type": "ANSWER", "src": "bob", "dst": "alice"}
    relayed = server.app.peerjs.counters.relayed  # type: ignore[attr-defined]
    assert relayed["OFFER"] == 1 and relayed["ANSWER"] == 2


async def test_heartbeat_is_unanswered_and_what_is_not_a_message_is_ignored(
    start_signaling: ServerFactory, peers: Peers
) -> None:
    server = await start_signaling()
    a, b = await peers.open(server, "alice"), await peers.open(server, "bob")
    for text in ('{"type":"HEARTBEAT"}', '{"type":"FOO","dst":"bob"}', "not json", "[1,2]", '{"type":5}', "{}"):
        await a.send(text)
    await a.send('{"type":"OFFER","dst":"bob","payload":NaN}')  # not JSON: ignored, never relayed as NaN
    await a.send('{"type":"OFFER","dst":"bob","payload":[1e999]}')  # past a double: ignored, never Infinity
    await a.send(json.dumps({"type": "OFFER", "dst": "bob", "payload": 1}))
    assert await recv(b) == {"type": "OFFER", "src": "alice", "dst": "bob", "payload": 1}
    await b.send(json.dumps({"type": "CANDIDATE", "dst": "alice", "payload": 2}))
    assert await recv(a) == {"type": "CANDIDATE", "src": "bob", "dst": "alice", "payload": 2}  # nothing before
    assert a.close_code is None


async def test_a_live_id_with_another_token_is_taken_and_its_holder_keeps_it(
    start_signaling: ServerFactory, peers: Peers
) -> None:
    server = await start_signaling()
    a, b = await peers.open(server, "alice", "t1"), await peers.open(server, "bob")
    thief = await peers.raw(server, "alice", "t2")
    assert await recv(thief) == {"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}
    assert (await closed(thief)).code == 1000
    await b.send(json.dumps({"type": "OFFER", "dst": "alice", "payload": "x"}))
    assert (await recv(a))["payload"] == "x"


async def test_the_same_token_takes_the_id_over(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling()
    old, b = await peers.open(server, "alice", "t1"), await peers.open(server, "bob")
    new = await peers.open(server, "alice", "t1")  # OPEN: the id is the new connection's
    assert (await closed(old)).code == 4001
    await b.send(json.dumps({"type": "OFFER", "dst": "alice", "payload": "to the new one"}))
    assert (await recv(new))["payload"] == "to the new one"
    again = await peers.open(server, "alice", "t1")  # and again (the lease alternates)
    assert (await closed(new)).code == 4001
    await again.send(json.dumps({"type": "CANDIDATE", "dst": "bob", "payload": 3}))
    assert await recv(b) == {"type": "CANDIDATE", "src": "alice", "dst": "bob", "payload": 3}
    await again.close()
    app = server.app
    await wait_until(lambda: app.connections == 1, timeout=STEP)  # type: ignore[attr-defined]
    await peers.open(server, "alice", "other")  # gone with its last connection: free


@pytest.mark.parametrize(
    ("query", "msg"),
    [
        ("key=peerjs&id=alice", "No id, token, or key supplied to websocket server"),
        ("key=peerjs&token=t", "No id, token, or key supplied to websocket server"),
        ("id=alice&token=t", "No id, token, or key supplied to websocket server"),
        ("key=other&id=alice&token=t", "Invalid key provided"),
        ("key=peerjs&id=a.b&token=t", "Invalid id provided"),
        ("key=peerjs&id=" + "x" * 65 + "&token=t", "Invalid id provided"),
    ],
)
async def test_the_original_errors_then_a_close(start_signaling: ServerFactory, query: str, msg: str) -> None:
    server = await start_signaling()
    async with connect(f"ws://127.0.0.1:{server.port}/peerjs/peerjs?{query}") as ws:
        assert await recv(ws) == {"type": "ERROR", "payload": {"msg": msg}}
        assert (await closed(ws)).code == 1000


async def test_messages_wait_for_their_peer_and_are_delivered_after_its_open_in_order(
    start_signaling: ServerFactory, peers: Peers
) -> None:
    server = await start_signaling()
    a = await peers.open(server, "alice")
    await a.send(json.dumps({"type": "OFFER", "dst": "late", "payload": 1}))
    await a.send(json.dumps({"type": "LEAVE", "dst": "late"}))  # never queued
    await a.send(json.dumps({"type": "EXPIRE", "dst": "late"}))  # never queued
    for n in (2, 3):
        await a.send(json.dumps({"type": "CANDIDATE", "dst": "late", "payload": n}))
    late = await peers.open(server, "late")  # OPEN first, then what waited
    got = [await recv(late) for _ in range(3)]
    assert [(m["type"], m["payload"]) for m in got] == [("OFFER", 1), ("CANDIDATE", 2), ("CANDIDATE", 3)]
    await a.send(json.dumps({"type": "CANDIDATE", "dst": "late", "payload": 4}))
    assert (await recv(late))["payload"] == 4
    await late.send(json.dumps({"type": "ANSWER", "dst": "alice", "payload": 5}))
    assert (await recv(a))["payload"] == 5  # no EXPIRE came before it


async def test_one_expire_per_peer_that_never_came(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling(peerjs_expire_timeout=0.3)
    a = await peers.open(server, "alice")
    for dst in ("ghost", "ghost", "phantom"):
        await a.send(json.dumps({"type": "OFFER", "dst": dst, "payload": 1}))
    got = [await recv(a), await recv(a)]
    assert sorted(m["src"] for m in got) == ["ghost", "phantom"]
    assert all(m == {"type": "EXPIRE", "src": m["src"], "dst": "alice"} for m in got)
    ghost = await peers.open(server, "ghost")  # what expired is gone
    await a.send(json.dumps({"type": "CANDIDATE", "dst": "ghost", "payload": 9}))
    assert (await recv(ghost))["payload"] == 9


async def test_leave_without_dst_gives_the_id_up(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling()
    a = await peers.open(server, "alice", "t1")
    await a.send(json.dumps({"type": "LEAVE"}))
    assert (await closed(a)).code == 1000
    await peers.open(server, "alice", "t2")


async def test_a_drop_frees_the_id_at_once(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling()
    a = await peers.open(server, "alice", "t1")
    (socket,) = server.app.peerjs.sockets  # type: ignore[attr-defined]
    socket.ws.transport.abort()  # no close handshake: the TCP connection is just gone
    await closed(a)
    app = server.app
    await wait_until(lambda: app.connections == 0, timeout=STEP)  # type: ignore[attr-defined]
    await peers.open(server, "alice", "t2")  # another client may have it now, as with the original


async def test_a_key_holds_at_most_peerjs_max_peers(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling(peerjs_max_peers=2, room_max_peers=1)
    await peers.open(server, "a")
    await peers.open(server, "b")  # the native room limit (1) is not a key's
    ws = await peers.raw(server, "c")
    assert await recv(ws) == {"type": "ERROR", "payload": {"msg": "Server has reached its concurrent user limit"}}
    assert (await closed(ws)).code == 1000


async def test_keys_are_namespaces(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling(peerjs_keys="one,two")
    one, two = await peers.open(server, "alice", key="one"), await peers.open(server, "alice", key="two")
    bob = await peers.open(server, "bob", key="two")
    await bob.send(json.dumps({"type": "OFFER", "dst": "alice", "payload": "two's"}))
    assert (await recv(two))["payload"] == "two's"
    await one.send(json.dumps({"type": "OFFER", "dst": "bob", "payload": "waits"}))  # no bob under key one
    await bob.send(json.dumps({"type": "OFFER", "dst": "alice", "payload": "again"}))
    assert (await recv(two))["payload"] == "again"
    ws = await peers.raw(server, "carol", key="peerjs")  # the default key is not accepted any more
    assert (await recv(ws))["payload"] == {"msg": "Invalid key provided"}


async def test_room_tokens_gate_keys_and_ids(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling(auth_secret=SECRET)
    tokens, now = RoomTokens(SECRET), time.time()
    for token in ("plain", tokens.issue("elsewhere", 60, now), tokens.issue("peerjs", 60, now, name="bob")):
        ws = await peers.raw(server, "alice", token)
        assert await recv(ws) == {"type": "ERROR", "payload": {"msg": "Invalid token provided"}}
    named, any_id = tokens.issue("peerjs", 60, now, name="alice"), tokens.issue("peerjs", 60, now)
    await peers.open(server, "alice", named)
    await peers.open(server, "carol", any_id)
    await peers.open(server, "alice", named)  # the same token takes the id over


async def test_rate_limited_messages_are_dropped_and_counted(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling(rate_limit=1, rate_burst=2)
    a, b = await peers.open(server, "alice"), await peers.open(server, "bob")
    for n in range(4):
        await a.send(json.dumps({"type": "CANDIDATE", "dst": "bob", "payload": n}))
    assert [(await recv(b))["payload"] for _ in range(2)] == [0, 1]
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/metrics") as r:
        metrics = await r.text()
    assert "signaling_rate_limited_total 2.0" in metrics
    assert 'signaling_peerjs_relayed_total{type="CANDIDATE"} 2.0' in metrics
    assert 'signaling_peerjs_opened_total{outcome="open"} 2.0' in metrics


async def test_connections_per_address_count_peerjs_sockets_too(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling(max_connections_per_ip=2, trusted_proxies="none")
    await peers.open(server, "alice")
    async with connect(f"ws://127.0.0.1:{server.port}/ws"):  # a native connection from the same address
        with pytest.raises(InvalidStatus) as refused:
            await peers.raw(server, "bob")
        assert refused.value.response.status == 429
    app = server.app
    await wait_until(lambda: app.connections == 1, timeout=STEP)  # type: ignore[attr-defined]
    await peers.open(server, "bob")  # the native one went: room again


async def test_events_and_the_server_api_cover_peerjs_peers(start_signaling: ServerFactory, peers: Peers) -> None:
    secret = new_secret()
    async with receiving(secret) as receiver:
        server = await start_signaling(webhook_urls=receiver.url, webhook_secret=secret, api_key=KEY)
        a, b = await peers.open(server, "alice", "t1"), await peers.open(server, "bob")
        await peers.open(server, "alice", "t1")  # a takeover is no event
        assert (await closed(a)).code == 4001
        async with http() as session:
            status, room, _ = await call(session, "GET", base(server) + "rooms/peerjs.peerjs")
            assert status == 200 and [p["id"] for p in room["peers"]] == ["peerjs.alice", "peerjs.bob"]
            assert (await call(session, "DELETE", base(server) + "rooms/peerjs.peerjs/peers/peerjs.bob"))[0] == 204
        assert (await closed(b)).code == 4003
        events = await receiver.until(4)
    assert [(e["type"], e["data"].get("peer"), e["data"].get("reason")) for e in events] == [
        ("room.started", None, None),
        ("peer.joined", "peerjs.alice", None),
        ("peer.joined", "peerjs.bob", None),
        ("peer.left", "peerjs.bob", "removed"),
    ]


# --------------------------------------------------------------------------------------------- HTTP API


async def get(url: str, origin: str | None = None) -> tuple[int, str, aiohttp.ClientResponse]:
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, await r.text(), r


async def test_id_is_a_fresh_uuid_and_peers_is_401_while_discovery_is_off(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    base = f"http://127.0.0.1:{server.port}/peerjs"
    status, text, r = await get(f"{base}/peerjs/id?ts=1&version=1.5.4")
    assert status == 200 and r.headers["Content-Type"].startswith("text/html") and uuid.UUID(text)
    assert (await get(f"{base}/peerjs/id"))[1] != text
    assert (await get(f"{base}/peerjs/peers"))[0] == 401
    status, text, _ = await get(f"{base}/")
    assert status == 200 and json.loads(text)["name"] == "PeerJS Server"
    assert (await get(f"{base}/peerjs/nothing"))[0] == 404
    assert (await get(f"{base}/peerjs/peerjs"))[0] == 426
    async with aiohttp.ClientSession() as http, http.head(f"{base}/peerjs/id") as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == 36 and await r.read() == b""


async def test_discovery_lists_a_keys_ids(start_signaling: ServerFactory, peers: Peers) -> None:
    server = await start_signaling(peerjs_discovery=True)
    await peers.open(server, "alice")
    await peers.open(server, "bob")
    status, text, _ = await get(f"http://127.0.0.1:{server.port}/peerjs/peerjs/peers")
    assert status == 200 and json.loads(text) == ["alice", "bob"]


async def test_cors_for_allowed_origins_only(start_signaling: ServerFactory) -> None:
    server = await start_signaling(allowed_origins="https://app.example")
    url = f"http://127.0.0.1:{server.port}/peerjs/peerjs/id"
    status, _, r = await get(url, "https://app.example")
    assert status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["Vary"] == "Origin"
    status, _, r = await get(url, "https://evil.example")
    assert status == 403 and "Access-Control-Allow-Origin" not in r.headers
    with pytest.raises(InvalidStatus) as refused:
        await connect(socket_url(server, "alice"), origin="https://evil.example")
    assert refused.value.response.status == 403
    async with connect(socket_url(server, "alice"), origin="https://app.example") as ws:
        assert await recv(ws) == {"type": "OPEN"}


# --------------------------------------------------------------------------------------------- two nodes


async def test_across_two_nodes(start_signaling: ServerFactory, redis_settings: dict[str, str], peers: Peers) -> None:
    one, two = await start_signaling(**redis_settings), await start_signaling(**redis_settings)
    a, b = await peers.open(one, "alice", "t1"), await peers.open(two, "bob")
    await a.send(json.dumps({"type": "OFFER", "dst": "bob", "payload": 1}))
    assert await recv(b) == {"type": "OFFER", "src": "alice", "dst": "bob", "payload": 1}
    await b.send(json.dumps({"type": "ANSWER", "dst": "alice", "payload": 2}))
    assert await recv(a) == {"type": "ANSWER", "src": "bob", "dst": "alice", "payload": 2}
    thief = await peers.raw(two, "alice", "t2")  # taken on the other node
    assert (await recv(thief))["type"] == "ID-TAKEN"
    moved = await peers.open(two, "alice", "t1")  # taken over from the other node
    assert (await closed(a)).code == 4001
    await b.send(json.dumps({"type": "CANDIDATE", "dst": "alice", "payload": 3}))
    assert (await recv(moved))["payload"] == 3
    await b.send(json.dumps({"type": "OFFER", "dst": "carol", "payload": 4}))  # waits for a peer of node one
    carol = await peers.open(one, "carol")
    assert await recv(carol) == {"type": "OFFER", "src": "bob", "dst": "carol", "payload": 4}

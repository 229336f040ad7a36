"""The y-webrtc endpoint over real sockets: each message of the protocol as y-webrtc's bin/server.js serves it,
each bad input the stock server dies of or keeps forever, its limits, tokens, metrics, and two nodes on Redis.

What the stock server does (read from its source): ``subscribe``/``unsubscribe`` take ``topics`` (missing: none;
non-strings skipped); ``publish`` goes to every subscriber of ``topic``, the sender too when subscribed, with
``clients`` set to their number and the rest of the message unchanged; ``ping`` gets ``{"type":"pong"}``;
anything else is ignored. The provider reads only ``publish``, so the ``error`` answers here do not disturb it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from signaling.interop.ywebrtc import room_topic, topic_room
from signaling.rooms.auth import RoomTokens
from signaling.rooms.peers import foreign
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.exceptions import ConnectionClosed
from tests.helpers.inprocess import server_url
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(60)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
STEP = 5.0
SECRET = "s" * 32


def url(server: WebSocketServer, query: str = "") -> str:
    return server_url(server, "/y-webrtc", ws=True) + query


async def send(conn: ClientConnection, **message: Any) -> None:
    await conn.send(json.dumps(message))


async def recv(conn: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(STEP):
        message: dict[str, Any] = json.loads(await conn.recv())
    return message


async def pong(conn: ClientConnection) -> None:
    """Every message before this ping has been handled (the server answers in order)."""
    await send(conn, type="ping")
    assert await recv(conn) == {"type": "pong"}


async def subscribed(server: WebSocketServer, *topics: str, query: str = "") -> ClientConnection:
    conn = await connect(url(server, query))
    await send(conn, type="subscribe", topics=list(topics))
    await pong(conn)
    return conn


async def error(conn: ClientConnection) -> dict[str, Any]:
    message = await recv(conn)
    assert message["type"] == "error", message
    return message


@pytest.fixture
async def server(start_signaling: ServerFactory) -> WebSocketServer:
    return await start_signaling()


def test_topics_become_rooms_no_native_room_can_name() -> None:
    for topic in ("doc", "a|b", "100%", "%7C|%25", "é x:y", ""):
        room = topic_room(topic)
        assert "|" not in room and foreign(room)  # a "." no native room name has
        assert room_topic(room) == topic
    assert room_topic("plain-native-room") is None


async def test_ping_is_answered_pong(server: WebSocketServer) -> None:
    async with connect(url(server)) as conn:
        await pong(conn)


async def test_publish_reaches_every_subscriber_the_sender_too_with_clients_and_fields_unchanged(
    server: WebSocketServer,
) -> None:
    a = await subscribed(server, "doc")
    b = await subscribed(server, "doc", "other")
    c = await subscribed(server, "other")
    data = {"to": "x", "from": "y", "type": "signal", "signal": {"sdp": "v=0\r\n", "n": [1, 2.5, None, True]}}
    await send(a, type="publish", topic="doc", data=data, extra="kept", clients=99)
    want = {"type": "publish", "topic": "doc", "data": data, "extra": "kept", "clients": 2}
    assert await recv(a) == want
    assert await recv(b) == want
    await pong(c)  # c is not subscribed to doc: the pong is all it gets
    # A publisher that is not subscribed reaches the subscribers, not itself (the stock server does the same).
    await send(c, type="publish", topic="doc", data="hi")
    assert await recv(a) == {"type": "publish", "topic": "doc", "data": "hi", "clients": 2}
    await pong(c)
    # Nobody subscribed: nothing, no answer.
    await send(a, type="publish", topic="nobody", data=1)
    await pong(a)
    for conn in (a, b, c):
        await conn.close()


async def test_unsubscribe_and_close_end_subscriptions(server: WebSocketServer) -> None:
    a = await subscribed(server, "doc", "two")
    b = await subscribed(server, "doc")
    await send(b, type="unsubscribe", topics=["doc", "never-subscribed", 5])
    assert (await error(b))["code"] == "invalid-message"  # the 5
    await pong(b)
    await send(a, type="publish", topic="doc", data=1)
    assert (await recv(a))["clients"] == 1
    await pong(b)  # b got nothing
    counters = server.app.ywebrtc.counters  # type: ignore[attr-defined]
    assert counters.subscribers == 2 and set(counters.topics) == {"doc", "two"}
    await a.close()
    await b.close()
    directory = server.app.backends.directory  # type: ignore[attr-defined]
    await wait_until(lambda: not counters.subscribers and not directory.stats().rooms, timeout=STEP)
    assert not counters.topics


async def test_subscribing_twice_counts_once(server: WebSocketServer) -> None:
    a = await subscribed(server, "doc", "doc")
    await send(a, type="subscribe", topics=["doc"])
    await send(a, type="publish", topic="doc")
    assert (await recv(a))["clients"] == 1
    await a.close()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "bad-json"),
        ('{"type":"publish","topic":"doc","data":NaN}', "bad-json"),
        ("[" * 100_000 + "]" * 100_000, None),  # past the message size: not an error but a close (1009)
        ("[" * 5000 + "]" * 5000, "bad-json"),  # deep nesting: the parser's depth limit
        ('"just a string"', "invalid-message"),
        ("[1,2]", "invalid-message"),
        ("null", "invalid-message"),
        ('{"no":"type"}', "unknown-type"),
        ('{"type":"nonsense"}', "unknown-type"),
        ('{"type":["subscribe"]}', "unknown-type"),
        ('{"type":"subscribe","topics":"doc"}', "invalid-message"),
        ('{"type":"subscribe","topics":{"0":"doc"}}', "invalid-message"),
        ('{"type":"subscribe","topics":[1,null,{},["doc"]]}', "invalid-message"),
        ('{"type":"unsubscribe","topics":7}', "invalid-message"),
        ('{"type":"publish"}', "invalid-message"),
        ('{"type":"publish","topic":5}', "invalid-message"),
        ('{"type":"publish","topic":"doc","data":1e400}', "invalid-message"),  # inf: JSON.parse could not
        ('{"type":"publish","topic":""}', "invalid-message"),
    ],
)
async def test_bad_input_is_answered_and_the_server_goes_on(
    server: WebSocketServer, text: str, code: str | None
) -> None:
    """Every one of these kills the stock server's process (JSON.parse or forEach throwing) or is ignored there."""
    bystander = await subscribed(server, "doc")
    async with connect(url(server)) as conn:
        await conn.send(text)
        if code is None:
            with pytest.raises(ConnectionClosed):
                await recv(conn)
            assert conn.close_code == 1009
        else:
            assert (await error(conn))["code"] == code
            await pong(conn)
    await send(bystander, type="publish", topic="doc")
    assert (await recv(bystander))["clients"] == 1
    await bystander.close()


async def test_a_binary_message_is_read_as_json_text_like_the_stock_server(server: WebSocketServer) -> None:
    async with connect(url(server)) as conn:
        await conn.send(b'{"type":"ping"}')
        assert await recv(conn) == {"type": "pong"}
        await conn.send(b"\xff\xfe")
        assert (await error(conn))["code"] == "bad-json"


async def test_topic_limits(start_signaling: ServerFactory) -> None:
    server = await start_signaling(ywebrtc_max_topics=3, ywebrtc_max_topic_length=10)
    async with connect(url(server)) as conn:
        await send(conn, type="subscribe", topics=["a", "b" * 11, "c"])
        assert "1 to 10 characters" in (await error(conn))["message"]
        await send(conn, type="subscribe", topics=["d", "e", "f"])
        refusal = await error(conn)
        assert refusal["code"] == "room-full" and "2 topic(s) skipped" in refusal["message"]
        await pong(conn)
        assert sorted(server.app.ywebrtc.counters.topics) == ["a", "c", "d"]  # type: ignore[attr-defined]
        # Unsubscribing makes room again.
        await send(conn, type="unsubscribe", topics=["a"])
        await send(conn, type="subscribe", topics=["f"])
        await pong(conn)
        assert sorted(server.app.ywebrtc.counters.topics) == ["c", "d", "f"]  # type: ignore[attr-defined]


async def test_a_topics_subscribers_have_a_limit_of_their_own(start_signaling: ServerFactory) -> None:
    """Not the native rooms' (8 by default): a document may have more collaborators than a mesh call peers."""
    server = await start_signaling(ywebrtc_max_subscribers=2, room_max_peers=1)
    a = await subscribed(server, "doc")
    b = await subscribed(server, "doc")
    async with connect(url(server)) as c:
        await send(c, type="subscribe", topics=["doc", "free"])
        refusal = await error(c)
        assert refusal["code"] == "room-full" and "'doc'" in refusal["message"]
        await send(c, type="publish", topic="free")
        assert (await recv(c))["clients"] == 1
    await a.close()
    await b.close()


async def test_message_size_is_the_transports(start_signaling: ServerFactory) -> None:
    server = await start_signaling(max_message_size=1024, rate_burst_bytes=4096)
    async with connect(url(server)) as conn:
        await send(conn, type="publish", topic="doc", data="x" * 1000)
        with pytest.raises(ConnectionClosed):
            await recv(conn)
        assert conn.close_code == 1009


async def test_too_fast_is_refused_then_closed_as_native_abuse(start_signaling: ServerFactory) -> None:
    server = await start_signaling(rate_limit=1, rate_burst=5, abuse_strikes=20)
    async with connect(url(server)) as conn:
        for _ in range(40):
            await send(conn, type="ping")
        answers = []
        with pytest.raises(ConnectionClosed):
            while True:
                answers.append(await recv(conn))
        assert answers[:5] == [{"type": "pong"}] * 5
        assert {a.get("code") for a in answers[5:]} == {"rate-limited"}
        assert conn.close_code == 1008


async def test_a_publish_costs_its_sender_every_copy(start_signaling: ServerFactory) -> None:
    """8 subscribers: a publish of ~40 KB is 320 KB of the sender's 1 MiB byte burst; the fourth is refused."""
    server = await start_signaling()
    subscribers = [await subscribed(server, "doc") for _ in range(7)]
    sender = await subscribed(server, "doc")
    data = "x" * 40_000
    for n in range(4):
        await send(sender, type="publish", topic="doc", data=data, n=n)
    got = [(await recv(sender)).get("n") for _ in range(3)]
    assert got == [0, 1, 2]
    assert (await error(sender))["code"] == "rate-limited"
    for conn in subscribers:
        assert [(await recv(conn))["n"] for _ in range(3)] == [0, 1, 2]
        await pong(conn)
        await conn.close()
    await sender.close()


async def test_origin_allow_list(start_signaling: ServerFactory) -> None:
    server = await start_signaling(allowed_origins=["https://app.example"])
    async with connect(url(server), origin="https://app.example") as conn:
        await pong(conn)
    with pytest.raises(Exception, match="403"):
        await connect(url(server), origin="https://evil.example")


async def test_room_tokens_name_the_topics(start_signaling: ServerFactory) -> None:
    server = await start_signaling(auth_secret=SECRET)
    tokens = RoomTokens(SECRET)
    now = time.time()
    docs = tokens.issue("team-a/*", 600, now)
    # No token: connected, but every subscribe is refused (the provider would retry a refused upgrade forever).
    async with connect(url(server)) as conn:
        await send(conn, type="subscribe", topics=["team-a/doc"])
        assert (await error(conn))["code"] == "unauthorized"
        await pong(conn)
    async with connect(url(server, "?token=not.a.jwt")) as conn:
        await send(conn, type="subscribe", topics=["team-a/doc"])
        assert "malformed token" in (await error(conn))["message"]
    owner = await subscribed(server, "team-a/doc", query=f"?token={docs}")
    async with connect(url(server, f"?token={docs}")) as conn:
        await send(conn, type="subscribe", topics=["team-a/doc", "team-b/doc"])
        refusal = await error(conn)
        assert refusal["code"] == "unauthorized" and "team-b/doc" in refusal["message"]
        # Publishing needs a subscription when tokens are on: no injecting into a topic one may not read.
        await send(conn, type="publish", topic="team-b/doc")
        assert (await error(conn))["code"] == "unauthorized"
        await send(conn, type="publish", topic="team-a/doc", data=1)
        assert (await recv(conn))["clients"] == 2
        assert (await recv(owner))["data"] == 1
    expired = tokens.issue("team-a/*", 1, now - 10)
    async with connect(url(server, f"?token={expired}")) as conn:
        await send(conn, type="subscribe", topics=["team-a/doc"])
        assert "expired" in (await error(conn))["message"]
    await owner.close()


async def test_metrics(server: WebSocketServer) -> None:
    a = await subscribed(server, "doc", "two")
    b = await subscribed(server, "doc")
    await send(a, type="publish", topic="doc")
    await recv(a)
    await recv(b)
    await send(b, type="bogus")
    await error(b)
    text = server.app.metrics.render().decode()  # type: ignore[attr-defined]
    for line in (
        "signaling_ywebrtc_connections 2.0",
        "signaling_ywebrtc_topics 2.0",
        "signaling_ywebrtc_subscribers 3.0",
        "signaling_ywebrtc_publishes_total 1.0",
        "signaling_ywebrtc_deliveries_total 2.0",
        'signaling_ywebrtc_errors_total{code="unknown-type"} 1.0',
    ):
        assert line in text, line
    await a.close()
    await b.close()


async def test_server_api_lists_and_removes_subscribers(start_signaling: ServerFactory) -> None:
    """Over HTTP, as a backend would: the topic is the room ``y-webrtc.<topic>`` (a ``/`` in it percent-encoded)."""
    key = "k" * 32
    server = await start_signaling(api_key=key)
    api = server_url(server, "/api/v1/rooms")
    auth = {"Authorization": "Bearer " + key}
    a = await subscribed(server, "team/doc")
    b = await subscribed(server, "team/doc", "other")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=STEP), headers=auth) as http:
        async with http.get(api) as response:
            listed = await response.json()
        assert listed["rooms"] == [
            {"room": "y-webrtc.other", "peers": 1, "seq": 2},
            {"room": "y-webrtc.team/doc", "peers": 2, "seq": 3},
        ]
        room = api + "/" + quote(topic_room("team/doc"), safe=":")
        async with http.get(room) as response:
            peers = [p["id"] for p in (await response.json())["peers"]]
        assert len(peers) == 2
        async with http.delete(f"{room}/peers/{peers[0]}") as response:
            assert response.status == 204
    with pytest.raises(ConnectionClosed):
        await recv(a)
    assert a.close_code == 4003
    # A topic is a foreign room: nothing in the native protocol's words (no peer-left) reaches its subscribers.
    await send(b, type="publish", topic="team/doc")
    assert (await recv(b))["clients"] == 1
    await b.close()


# ---------------------------------------------------------------------------------------------------- two nodes


@pytest.fixture
async def two_nodes(
    start_signaling: ServerFactory, redis_settings: dict[str, str]
) -> AsyncIterator[list[WebSocketServer]]:
    yield [await start_signaling(**redis_settings), await start_signaling(**redis_settings)]


async def seen(node: WebSocketServer, topic: str, subscribers: int) -> None:
    """``node``'s view of the topic's room has caught up with the cluster (changes reach it through Redis)."""
    directory = node.app.backends.directory  # type: ignore[attr-defined]
    await wait_until(lambda: len(directory.members(topic_room(topic))) == subscribers, timeout=STEP)


async def test_two_nodes_publish_reaches_both_with_the_clusters_count(two_nodes: list[WebSocketServer]) -> None:
    one, two = two_nodes
    a = await subscribed(one, "doc")
    b = await subscribed(two, "doc")
    c = await subscribed(two, "doc")
    await seen(one, "doc", 3)
    await send(a, type="publish", topic="doc", data={"x": 1})
    want = {"type": "publish", "topic": "doc", "data": {"x": 1}, "clients": 3}
    assert [await recv(conn) for conn in (a, b, c)] == [want] * 3
    await send(c, type="publish", topic="doc", data=2)
    assert [(await recv(conn))["data"] for conn in (a, b, c)] == [2, 2, 2]
    # A publisher on a node where nobody is subscribed to the topic (no view of its room there) still reaches
    # its subscribers: the roster is read from Redis.
    far = await subscribed(two, "far")
    assert not one.app.backends.directory.members(topic_room("far"))  # type: ignore[attr-defined]
    async with connect(url(one)) as stranger:
        await send(stranger, type="publish", topic="far", data=3)
        await pong(stranger)
        assert await recv(far) == {"type": "publish", "topic": "far", "data": 3, "clients": 1}
    await far.close()
    await send(b, type="unsubscribe", topics=["doc"])
    await pong(b)
    await seen(one, "doc", 2)
    await send(a, type="publish", topic="doc", data=4)
    assert (await recv(a))["clients"] == 2
    assert (await recv(c))["clients"] == 2
    for conn in (a, b, c):
        await conn.close()


async def test_two_nodes_one_record_per_node_per_publish(two_nodes: list[WebSocketServer]) -> None:
    """Seven subscribers on node two, one publish from node one: Redis carries it to node two once."""
    one, two = two_nodes
    sender = await subscribed(one, "doc")
    receivers = [await subscribed(two, "doc") for _ in range(7)]
    await seen(one, "doc", 8)
    router = two.app.backends.router  # type: ignore[attr-defined]
    records: list[str] = []
    on_delivery = router.on_delivery

    def counting(payload: str) -> None:
        records.append(payload)
        on_delivery(payload)

    cluster = two.app.cluster  # type: ignore[attr-defined]
    cluster.on_delivery = counting
    await send(sender, type="publish", topic="doc", data="once")
    for conn in receivers:
        assert (await recv(conn))["clients"] == 8
    assert len([r for r in records if "once" in r]) == 1
    for conn in (sender, *receivers):
        await conn.close()


async def test_a_connection_that_never_subscribes_is_closed_at_the_join_timeout(
    start_signaling: ServerFactory,
) -> None:
    server = await start_signaling(join_timeout=0.3)
    async with connect(url(server)) as idle, connect(url(server)) as working:
        await send(working, type="subscribe", topics=["doc"])
        await pong(working)
        with pytest.raises(ConnectionClosed):
            await recv(idle)
        assert idle.close_code == 1008
        await pong(working)


async def test_each_topic_of_a_subscribe_counts_as_a_message(start_signaling: ServerFactory) -> None:
    """Each topic is a join (with Redis, a round trip): 64 topics per message must not multiply the rate by 64."""
    server = await start_signaling(rate_limit=1, rate_burst=25)
    async with connect(url(server)) as conn:
        await send(conn, type="subscribe", topics=[f"t{n}" for n in range(10)])
        await send(conn, type="unsubscribe", topics=[f"t{n}" for n in range(10)])  # 10 + 10 of the 25: 5 left
        await send(conn, type="subscribe", topics=[f"u{n}" for n in range(10)])
        refusal = await error(conn)
        assert refusal["code"] == "rate-limited" and "10 topics" in refusal["message"]
        assert not server.app.ywebrtc.counters.topics  # type: ignore[attr-defined]


async def test_two_nodes_share_a_topics_subscriber_limit(
    start_signaling: ServerFactory, redis_settings: dict[str, str]
) -> None:
    one = await start_signaling(ywebrtc_max_subscribers=2, **redis_settings)
    two = await start_signaling(ywebrtc_max_subscribers=2, **redis_settings)
    a = await subscribed(one, "doc")
    b = await subscribed(two, "doc")
    async with connect(url(one)) as c:
        await send(c, type="subscribe", topics=["doc"])
        assert (await error(c))["code"] == "room-full"
    await a.close()
    await b.close()


async def test_the_path_is_configurable_or_off(start_signaling: ServerFactory) -> None:
    moved = await start_signaling(ywebrtc_path="/yjs")
    async with connect(server_url(moved, "/yjs", ws=True)) as conn:
        await pong(conn)
    off = await start_signaling(ywebrtc_path="none")
    for server in (moved, off):
        with pytest.raises(Exception, match="404"):
            await connect(url(server))

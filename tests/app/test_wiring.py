"""The wiring of the domain to the transport, over real loopback sockets: what the server does to a connection
as a whole (rate limit, abuse, binary messages, the join deadline), beyond what one Session decides."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from signaling.app.wiring import SignalingApp
from signaling.rooms.auth import RoomTokens
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.exceptions import ConnectionClosed, InvalidStatus
from tests.helpers.wait import hold

pytestmark = pytest.mark.timeout(30)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
STEP = 5.0


async def recv_json(ws: ClientConnection) -> dict[str, object]:
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


async def test_over_the_rate_a_message_gets_rate_limited_and_the_connection_lives(
    start_signaling: ServerFactory,
) -> None:
    server = await start_signaling(rate_limit=1, rate_burst=2)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        for i in range(3):
            await ws.send(json.dumps({"type": "ping", "id": i}))
        assert await recv_json(ws) == {"type": "pong"}
        assert await recv_json(ws) == {"type": "pong"}
        error = await recv_json(ws)
        assert error["code"] == "rate-limited" and error["ref"] == 2
        assert "over 1 messages/s (burst 2)" in str(error["message"])
        assert ws.close_code is None


async def test_persistent_abuse_is_closed_with_1008(start_signaling: ServerFactory) -> None:
    server = await start_signaling(rate_limit=1, rate_burst=1)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        flood = [json.dumps({"type": "ping", "id": i}) for i in range(150)]
        for text in flood:
            await ws.send(text)
        replies = []
        exc = None
        try:
            async with asyncio.timeout(STEP):
                while True:
                    replies.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed_exc:
            exc = closed_exc
        assert exc is not None and exc.code == 1008 and exc.reason == "persistent rate limit abuse"
        codes = [r.get("code") for r in replies]
        # One pong (the burst), then refusals answered until the strikes (draining at 1/s) reach 100.
        assert replies[0] == {"type": "pong"}
        assert set(codes[1:]) == {"rate-limited"} and 99 <= len(codes[1:]) <= 100, len(codes)


async def test_a_binary_message_is_closed_with_1003(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send(b"\x00\x01")
        exc = await closed(ws)
    assert (exc.code, exc.reason) == (1003, "binary messages are not supported; send JSON text")


async def test_no_join_within_the_deadline_is_closed_with_1008(start_signaling: ServerFactory) -> None:
    server = await start_signaling(join_timeout=0.2)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        exc = await closed(ws)
    assert (exc.code, exc.reason) == (1008, "no join within the join timeout")


async def test_a_joined_connection_outlives_the_join_deadline(start_signaling: ServerFactory) -> None:
    server = await start_signaling(join_timeout=0.2)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send(json.dumps({"type": "join", "room": "r"}))
        assert (await recv_json(ws))["type"] == "welcome"
        await hold(0.4, why="past the join deadline, whose timer must not close a joined connection")
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv_json(ws) == {"type": "pong"}


# --------------------------------------------------------------------------------------------- access control

SECRET = "k" * 40


async def join(ws: ClientConnection, **fields: object) -> dict[str, object]:
    await ws.send(json.dumps({"type": "join", "room": "demo", "id": 1, **fields}))
    return await recv_json(ws)


async def test_room_tokens_gate_joins_and_impose_their_name(start_signaling: ServerFactory) -> None:
    server = await start_signaling(auth_secret=SECRET)
    tokens = RoomTokens(SECRET)
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(url) as ws:
        for fields, says in [
            ({}, "needs a room token"),
            ({"token": "garbage"}, "malformed token"),
            ({"token": tokens.issue("other", 60, time.time())}, "is for room 'other', not 'demo'"),
            ({"token": tokens.issue("demo", 60, time.time() - 120)}, "expired"),
            ({"token": RoomTokens("x" * 40).issue("demo", 60, time.time())}, "signature is invalid"),
        ]:
            reply = await join(ws, **fields)
            assert reply["type"] == "error" and reply["code"] == "unauthorized" and reply["ref"] == 1
            assert says in str(reply["message"]), reply
        welcome = await join(ws, name="Mallory", token=tokens.issue("demo", 60, time.time(), name="Ada"))
        assert welcome["type"] == "welcome"  # the connection lived through five refusals
        app = server.app
        assert isinstance(app, SignalingApp)
        assert [m.name for m in app.backends.directory.members("demo").values()] == ["Ada"]


async def test_repeated_bad_tokens_from_one_address_are_throttled(start_signaling: ServerFactory) -> None:
    """Past the failures, bad tokens from the address are answered without details; a neighbour behind the same
    address (an office NAT) still joins with a valid one."""
    server = await start_signaling(auth_secret=SECRET, auth_max_failures=3, auth_failure_window=60)
    good = RoomTokens(SECRET).issue("demo", 60, time.time())
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        for _ in range(3):
            assert "malformed" in str((await join(ws, token="bad"))["message"])
        throttled = await join(ws, token="bad")
        assert throttled["code"] == "unauthorized" and "too many failed tokens" in str(throttled["message"])
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as neighbour:
        assert (await join(neighbour, token=good))["type"] == "welcome"


async def test_a_foreign_browser_origin_is_refused_with_403(start_signaling: ServerFactory) -> None:
    server = await start_signaling(allowed_origins="https://app.example")
    url = f"ws://127.0.0.1:{server.port}/ws"
    with pytest.raises(InvalidStatus) as info:
        await connect(url, origin="https://evil.example")
    assert info.value.status == 403
    for origin in (f"http://127.0.0.1:{server.port}", "https://app.example", None):
        async with connect(url, origin=origin) as ws:
            assert (await join(ws))["type"] == "welcome"


async def test_connections_per_address_and_their_rate_are_limited(start_signaling: ServerFactory) -> None:
    # Loopback is a proxy's address, exempt, unless no proxy is trusted (tests/app/test_proxy_limits.py).
    server = await start_signaling(
        trusted_proxies="none", max_connections_per_ip=2, connection_rate_per_ip=1000, connection_burst_per_ip=1000
    )
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(url), connect(url):
        with pytest.raises(InvalidStatus) as info:
            await connect(url)
        assert info.value.status == 429
    async with connect(url):  # the slots came back
        pass
    rated = await start_signaling(trusted_proxies="none", connection_rate_per_ip=1, connection_burst_per_ip=2)
    url = f"ws://127.0.0.1:{rated.port}/ws"
    for _ in range(2):
        async with connect(url):
            pass
    with pytest.raises(InvalidStatus) as info:
        await connect(url)
    assert info.value.status == 429


async def test_behind_a_trusted_proxy_limits_count_the_forwarded_client(start_signaling: ServerFactory) -> None:
    server = await start_signaling(trusted_proxies="127.0.0.1", max_connections_per_ip=1)
    url = f"ws://127.0.0.1:{server.port}/ws"
    alice = [("X-Forwarded-For", "198.51.100.1")]
    async with connect(url, extra_headers=alice), connect(url, extra_headers=[("X-Forwarded-For", "198.51.100.2")]):
        with pytest.raises(InvalidStatus):
            await connect(url, extra_headers=alice)


# ---------------------------------------------------------------------------------------------- observability


async def test_metrics_count_what_happens(start_signaling: ServerFactory) -> None:
    server = await start_signaling(rate_limit=1, rate_burst=1, turn_secret="t", turn_urls="turn:127.0.0.1:3478")
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(url) as a, connect(url) as b:
        assert (await join(a))["type"] == "welcome"
        welcome_b = await join(b)
        await recv_json(a)  # peer-joined
        await b.send(json.dumps({"type": "message", "to": "nobody", "data": 1}))  # refused: over the rate
        assert (await recv_json(b))["code"] == "rate-limited"
        with pytest.raises(InvalidStatus):
            await connect(url, origin="https://evil.example")
        samples = await scrape(server.port)
        assert samples[("signaling_connections", ())] == 2
        assert samples[("signaling_rooms", ())] == 1 and samples[("signaling_peers", ())] == 2
        assert samples[("signaling_rate_limited_total", ())] == 1
        assert samples[("signaling_errors_total", (("code", "rate-limited"),))] == 1
        assert samples[("signaling_handshake_rejections_total", (("reason", "origin"),))] == 1
        assert samples[("signaling_turn_credentials_issued_total", ())] == 2
        assert samples[("signaling_handshakes_total", ())] >= 2
        assert samples[("signaling_ready", ())] == 1
        assert ("process_cpu_seconds_total", ()) in samples
        assert welcome_b["iceServers"]
    samples = await scrape(server.port)
    assert samples[("signaling_closes_total", (("code", "1000"),))] >= 2
    assert samples[("signaling_relay_latency_seconds_count", ())] >= 1


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(STEP):
        raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


async def test_readyz_follows_the_apps_readiness(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    app = server.app
    assert isinstance(app, SignalingApp)

    async def readyz() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(STEP):
            raw = await reader.read()
        writer.close()
        return raw

    assert (await readyz()).startswith(b"HTTP/1.1 200 ")
    app.ready = False  # what the process does the moment a shutdown (or drain) starts
    assert (await readyz()).startswith(b"HTTP/1.1 503 ")


async def test_fresh_turn_credentials_reach_a_joined_peer_before_expiry(start_signaling: ServerFactory) -> None:
    server = await start_signaling(turn_secret="coturn-secret", turn_urls="turn:127.0.0.1:3478", turn_ttl=2)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        welcome = await join(ws)
        first = welcome["iceServers"][0]  # type: ignore[index]
        async with asyncio.timeout(5):
            update = json.loads(await ws.recv())
        assert update["type"] == "ice-servers"
        fresh = update["iceServers"][0]
        assert fresh["urls"] == first["urls"] and fresh["username"] != first["username"]
        expiry, peer = fresh["username"].split(":")
        assert peer == welcome["peer"] and int(expiry) >= time.time() + 1


async def test_a_trickle_ice_storm_in_a_full_room_is_not_rate_limited(start_signaling: ServerFactory) -> None:
    """The defaults let a newcomer in a full room (7 others) send an offer and 60 candidates to each at once."""
    server = await start_signaling()
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with contextlib.AsyncExitStack() as stack:
        others = [await stack.enter_async_context(connect(url)) for _ in range(7)]
        for ws in others:
            assert (await join(ws))["type"] == "welcome"
        newcomer = await stack.enter_async_context(connect(url))
        welcome = await join(newcomer)
        listed = welcome["peers"]
        assert isinstance(listed, list)
        peers = [p["peer"] for p in listed]
        assert len(peers) == 7
        candidate = {
            "candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
        burst = []
        for peer in peers:
            burst.append({"type": "offer", "to": peer, "sdp": "v=0\r\n" + "a=x\r\n" * 200})
            burst += [{"type": "candidate", "to": peer, "candidate": candidate}] * 60
        for message in burst:
            await newcomer.send(json.dumps(message))
        await newcomer.send(json.dumps({"type": "ping", "id": "after"}))
        assert await recv_json(newcomer) == {"type": "pong"}  # and no rate-limited error before it
        for ws in others:
            got: list[dict[str, object]] = []
            while len(got) < 61:
                msg = await recv_json(ws)
                if msg["type"] in ("offer", "candidate"):
                    got.append(msg)
            assert got[0]["type"] == "offer"


async def test_a_deeply_nested_refused_message_is_answered_not_a_crash(start_signaling: ServerFactory) -> None:
    server = await start_signaling(rate_limit=1, rate_burst=1)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send(json.dumps({"type": "ping"}))
        await ws.send("[" * 5000 + "]" * 5000)
        assert await recv_json(ws) == {"type": "pong"}
        assert (await recv_json(ws))["code"] == "rate-limited"
        assert ws.close_code is None

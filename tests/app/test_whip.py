"""WHIP and WHEP over real sockets (README, "Broadcast into a call with OBS (WHIP)"; docs/protocol.md): the HTTP
side as RFC 9725 has it, and the room side as WebSocket peers see it: the synthetic peer, its offer, its
candidates, its leaving."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.app.webhooks import new_secret
from signaling.app.wiring import SignalingApp
from signaling.rooms.auth import RoomTokens
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from tests.helpers.ports import free_port
from tests.helpers.redis import READY, redis_argv
from tests.helpers.server_process import async_running_process
from tests.helpers.wait import wait_until
from tests.helpers.webhook_receiver import receiving

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
STEP = 5.0
ROOT = Path(__file__).resolve().parents[2]
SECRET = "s" * 40
PWD = "p" + "w" * 22
OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    f"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:{PWD}\r\n"
    "a=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:abcd\r\n"
    f"a=ice-pwd:{PWD}\r\na=sendonly\r\n"
)
ANSWER = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n"
SDP = {"Content-Type": "application/sdp"}
FRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}
CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"


def url(server: WebSocketServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


@contextlib.asynccontextmanager
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=4 * STEP)) as session:
        yield session


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(STEP):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def join(server: WebSocketServer, stack: contextlib.AsyncExitStack, **fields: Any) -> tuple[Any, dict[str, Any]]:
    ws = await stack.enter_async_context(connect(url(server, "/ws").replace("http", "ws", 1)))
    await ws.send(json.dumps({"type": "join", "room": "r", **fields}))
    welcome = await recv(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def answer_the_offer(ws: ClientConnection, kind: str = "whip") -> dict[str, Any]:
    """As a receiving peer: the synthetic peer joins, then offers; answer it. Returns its peer-joined."""
    joined = await recv(ws)
    assert joined["type"] == "peer-joined" and joined["meta"] == {"kind": kind}, joined
    offer = await recv(ws)
    assert (offer["type"], offer["from"], offer["sdp"]) == ("offer", joined["peer"], OFFER)
    await ws.send(json.dumps({"type": "answer", "to": joined["peer"], "sdp": ANSWER}))
    return joined


async def request(
    session: aiohttp.ClientSession, method: str, target: str, body: str = "", headers: dict[str, str] | None = None
) -> tuple[int, str, aiohttp.ClientResponse]:
    async with session.request(method, target, data=body.encode(), headers=headers or {}) as response:
        return response.status, await response.text(), response


async def test_a_whip_offer_is_answered_by_the_longest_present_peer(start_signaling: ServerFactory) -> None:
    server = await start_signaling(
        ice_servers=[{"urls": ["stun:127.0.0.1:3478", "stun:[::1]:3478"]}],
        turn_secret=SECRET,
        turn_urls=["turn:127.0.0.1:3478?transport=udp"],
    )
    async with contextlib.AsyncExitStack() as stack, http() as session:
        alice, _ = await join(server, stack)
        bob, _ = await join(server, stack)
        assert (await recv(alice))["type"] == "peer-joined"
        post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, SDP))
        whip = await answer_the_offer(alice)
        status, body, response = await post
        assert (status, body, response.content_type) == (201, ANSWER, "application/sdp")
        seen = await recv(bob)  # everyone sees it join; only the longest present is offered to
        assert seen == {"type": "peer-joined", "peer": whip["peer"], "name": None, "meta": {"kind": "whip"}}
        location = response.headers["Location"]
        assert location.startswith("/whip/r/") and whip["peer"] not in location
        etag = response.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
        # The Link headers are exactly the synthetic peer's welcome.iceServers: the STUN URLs, then TURN with the
        # credentials minted for it (TURN REST: "expiry:peer", HMAC-SHA1 of it with the shared secret).
        carol, welcome = await join(server, stack)
        assert {"peer": whip["peer"], "name": None, "meta": {"kind": "whip"}} in welcome["peers"]
        links = response.headers.getall("Link")
        assert links[:2] == ['<stun:127.0.0.1:3478>; rel="ice-server"', '<stun:[::1]:3478>; rel="ice-server"']
        match = re.fullmatch(
            r'<turn:127\.0\.0\.1:3478\?transport=udp>; rel="ice-server"; username="(\d+):([^"]+)"; '
            r'credential="([^"]+)"; credential-type="password"',
            links[2],
        )
        assert match is not None and len(links) == 3, links
        expiry, peer, credential = match.groups()
        assert peer == whip["peer"] and int(expiry) > time.time()
        digest = hmac.new(SECRET.encode(), f"{expiry}:{peer}".encode(), hashlib.sha1).digest()
        assert credential == base64.b64encode(digest).decode()
        for ws in (alice, bob):
            assert (await recv(ws))["type"] == "peer-joined"  # carol

        # Trickle: candidates of the fragment reach the receiving peer, with their m-line; the end as null.
        frag = f"a=ice-ufrag:abcd\r\na=ice-pwd:{PWD}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:1\r\na={CANDIDATE}\r\n"
        status, _, response = await request(session, "PATCH", url(server, location), frag, {**FRAG, "If-Match": etag})
        assert status == 204 and response.headers["ETag"] == etag
        got = await recv(alice)
        assert got == {
            "type": "candidate",
            "from": whip["peer"],
            "candidate": {"candidate": CANDIDATE, "sdpMid": "1", "sdpMLineIndex": 1},
        }
        status, _, _ = await request(session, "PATCH", url(server, location), "a=end-of-candidates\r\n", FRAG)
        assert status == 204  # no If-Match: accepted
        assert (await recv(alice))["candidate"] is None
        stale = await request(session, "PATCH", url(server, location), frag, {**FRAG, "If-Match": '"stale"'})
        assert stale[0] == 412
        restart = frag.replace("abcd", "efgh")
        assert (await request(session, "PATCH", url(server, location), restart, {**FRAG, "If-Match": "*"}))[0] == 422
        assert (await request(session, "PATCH", url(server, location), frag, SDP))[0] == 415
        assert (await request(session, "PATCH", url(server, location), "garbage", FRAG))[0] == 400

        assert (await request(session, "DELETE", url(server, location)))[0] == 200
        for ws in (alice, bob, carol):
            assert await recv(ws) == {"type": "peer-left", "peer": whip["peer"]}
        assert (await request(session, "DELETE", url(server, location)))[0] == 404
        assert (await request(session, "PATCH", url(server, location), frag, FRAG))[0] == 404
        metrics = (await request(session, "GET", url(server, "/metrics")))[1]
        assert 'signaling_whip_responses_total{kind="whip",method="POST",status="201"} 1.0' in metrics
        assert 'signaling_whip_sessions{kind="whip"} 0.0' in metrics


async def test_a_whep_offer_goes_to_the_named_peer(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with contextlib.AsyncExitStack() as stack, http() as session:
        alice, _ = await join(server, stack)
        bob, bob_welcome = await join(server, stack)
        await recv(alice)
        target = url(server, f"/whep/r?peer={bob_welcome['peer']}")
        post = asyncio.ensure_future(request(session, "POST", target, OFFER, SDP))
        assert (await recv(alice))["type"] == "peer-joined"
        whep = await answer_the_offer(bob, "whep")
        status, body, response = await post
        assert (status, body) == (201, ANSWER) and response.headers["Location"].startswith("/whep/r/")
        # The receiving peer says the media ended: the session leaves.
        await bob.send(json.dumps({"type": "message", "to": whep["peer"], "data": {"type": "ended"}}))
        assert await recv(alice) == {"type": "peer-left", "peer": whep["peer"]}
        assert (await request(session, "DELETE", url(server, response.headers["Location"])))[0] == 404


async def test_no_receiving_peer_is_a_404_and_the_session_leaves(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with contextlib.AsyncExitStack() as stack, http() as session:
        status, body, _ = await request(session, "POST", url(server, "/whip/empty"), OFFER, SDP)
        assert status == 404 and "no peer" in body
        alice, _ = await join(server, stack)
        for wanted in ("nobody", "x" * 16):
            status, body, _ = await request(session, "POST", url(server, f"/whip/r?peer={wanted}"), OFFER, SDP)
            assert status == 404 and repr(wanted) in body
            joined = await recv(alice)
            assert joined["meta"] == {"kind": "whip"}
            assert await recv(alice) == {"type": "peer-left", "peer": joined["peer"]}
        # A room of WHIP sessions only has no one to answer either.
        post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, SDP))
        whip = await answer_the_offer(alice)
        assert (await post)[0] == 201
        await alice.close()
        # The receiving peer left: the session is over, and the room with it.
        app = server.app
        assert isinstance(app, SignalingApp)
        await wait_until(lambda: not app.whip.sessions, timeout=STEP, message="the session outlived its receiver")
        assert whip["peer"] not in app.backends.directory.members("r")
        status, _, _ = await request(session, "POST", url(server, "/whep/r"), OFFER, SDP)
        assert status == 404


async def test_a_peer_in_another_room_is_not_found(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with contextlib.AsyncExitStack() as stack, http() as session:
        _, other = await join(server, stack, room="elsewhere")
        await join(server, stack)
        status, _, _ = await request(session, "POST", url(server, f"/whip/r?peer={other['peer']}"), OFFER, SDP)
        assert status == 404


async def test_no_answer_in_time_is_a_504_and_the_session_leaves(start_signaling: ServerFactory) -> None:
    server = await start_signaling(whip_answer_timeout=0.3)
    async with contextlib.AsyncExitStack() as stack, http() as session:
        alice, _ = await join(server, stack)
        started = time.monotonic()
        status, body, _ = await request(session, "POST", url(server, "/whip/r"), OFFER, SDP)
        assert status == 504 and "did not answer within 0.3 s" in body and time.monotonic() - started >= 0.3
        joined = await recv(alice)
        assert (await recv(alice))["type"] == "offer"
        assert await recv(alice) == {"type": "peer-left", "peer": joined["peer"]}


async def test_wrong_content_type_and_bad_bodies(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with http() as session:
        for headers in ({}, {"Content-Type": "application/json"}, {"Content-Type": "text/plain"}):
            status, _, response = await request(session, "POST", url(server, "/whip/r"), OFFER, headers)
            assert status == 415 and response.headers["Accept-Post"] == "application/sdp"
        assert (await request(session, "POST", url(server, "/whip/r"), "hello", SDP))[0] == 400
        assert (await request(session, "POST", url(server, "/whip/bad room!"), OFFER, SDP))[0] == 400
        assert (await request(session, "GET", url(server, "/whip/r")))[0] == 405
        assert (await request(session, "DELETE", url(server, "/whip/r/nosuchsession")))[0] == 404
        assert (await request(session, "PATCH", url(server, "/whep/r/nosuchsession"), "", FRAG))[0] == 404


async def test_room_tokens_are_bearer_tokens(start_signaling: ServerFactory) -> None:
    server = await start_signaling(auth_secret=SECRET)
    token = RoomTokens(SECRET).issue("r", 60, time.time())
    async with contextlib.AsyncExitStack() as stack, http() as session:
        for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Bearer " + token + "x"}):
            status, _, response = await request(session, "POST", url(server, "/whip/r"), OFFER, {**SDP, **headers})
            assert status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        other_room = RoomTokens(SECRET).issue("elsewhere", 60, time.time())
        auth = {"Authorization": "Bearer " + other_room}
        assert (await request(session, "POST", url(server, "/whip/r"), OFFER, {**SDP, **auth}))[0] == 401
        alice, _ = await join(server, stack, token=token)
        auth = {"Authorization": "Bearer " + token}
        post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, {**SDP, **auth}))
        await answer_the_offer(alice)
        assert (await post)[0] == 201


async def test_cors_for_browser_clients(start_signaling: ServerFactory) -> None:
    page = "http://127.0.0.1:1"
    server = await start_signaling(allowed_origins=[page])
    async with contextlib.AsyncExitStack() as stack, http() as session:
        preflight = {
            "Origin": page,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        status, _, response = await request(session, "OPTIONS", url(server, "/whip/r"), headers=preflight)
        assert status == 204 and response.headers["Access-Control-Allow-Origin"] == page
        allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type", "if-match"} <= allowed and "*" not in allowed
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        status, _, response = await request(session, "OPTIONS", url(server, "/whip/r/x"), headers=preflight)
        assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
        alice, _ = await join(server, stack)
        post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, {**SDP, "Origin": page}))
        await answer_the_offer(alice)
        status, _, response = await post
        assert status == 201 and response.headers["Access-Control-Allow-Origin"] == page
        exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"Location", "ETag", "Link"} <= exposed
        evil = {**SDP, "Origin": "http://evil.example"}
        status, _, response = await request(session, "POST", url(server, "/whip/r"), OFFER, evil)
        assert status == 403 and "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_a_client_gone_before_the_answer_leaves(start_signaling: ServerFactory, kind: str) -> None:
    server = await start_signaling()
    async with contextlib.AsyncExitStack() as stack:
        alice, _ = await join(server, stack)
        async with http() as session:
            post = asyncio.ensure_future(request(session, "POST", url(server, f"/{kind}/r"), OFFER, SDP))
            joined = await recv(alice)
            assert (await recv(alice))["type"] == "offer"
            post.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await post
        assert await recv(alice) == {"type": "peer-left", "peer": joined["peer"]}


async def test_the_receiving_peer_on_another_node(
    start_signaling: ServerFactory, redis_settings: dict[str, str]
) -> None:
    """Cluster mode: the POST, PATCH and DELETE reach one node, the receiving peer is on the other."""
    one = await start_signaling(**redis_settings)
    other = await start_signaling(**redis_settings)
    async with contextlib.AsyncExitStack() as stack, http() as session, asyncio.timeout(6 * STEP):
        alice, _ = await join(other, stack)
        post = asyncio.ensure_future(request(session, "POST", url(one, "/whip/r"), OFFER, SDP))
        whip = await answer_the_offer(alice)
        status, body, response = await post
        assert (status, body) == (201, ANSWER)
        location = response.headers["Location"]
        carol, welcome = await join(one, stack)  # a later joiner on the POST's node sees the session too
        assert {"peer": whip["peer"], "name": None, "meta": {"kind": "whip"}} in welcome["peers"]
        assert (await recv(alice))["peer"] == welcome["peer"]
        frag = f"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na={CANDIDATE}\r\n"
        assert (await request(session, "PATCH", url(one, location), frag, FRAG))[0] == 204
        got = await recv(alice)
        assert (got["type"], got["from"], got["candidate"]["sdpMLineIndex"]) == ("candidate", whip["peer"], 0)
        assert (await request(session, "DELETE", url(one, location)))[0] == 200
        for ws in (alice, carol):
            assert await recv(ws) == {"type": "peer-left", "peer": whip["peer"]}
        # No answer across nodes either: 504, and the session leaves.
        slow = await start_signaling(whip_answer_timeout=0.3, **redis_settings)
        status, _, _ = await request(session, "POST", url(slow, "/whip/r"), OFFER, SDP)
        assert status == 504
        for ws in (alice, carol):
            late = await recv(ws)
            assert late["type"] == "peer-joined"
        assert (await recv(alice))["type"] == "offer"  # alice was here first: the offer went to her
        for ws in (alice, carol):
            assert await recv(ws) == {"type": "peer-left", "peer": late["peer"]}


async def test_sessions_end_when_the_cluster_loses_redis(start_signaling: ServerFactory, tmp_path: Path) -> None:
    """Their rooms can no longer be kept true: like WebSocket clients, they end (the client must POST again)."""
    async with async_running_process(redis_argv(tmp_path), name="redis-whip", ready_log=READY) as redis_process:
        server = await start_signaling(redis_url=f"redis://127.0.0.1:{redis_process.port}/0", redis_prefix="w")
        app = server.app
        assert isinstance(app, SignalingApp)
        async with contextlib.AsyncExitStack() as stack, http() as session:
            alice, _ = await join(server, stack)
            post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, SDP))
            await answer_the_offer(alice)
            status, _, response = await post
            assert status == 201 and app.whip.sessions
            await redis_process.stop_async()
            await wait_until(lambda: not app.whip.sessions, timeout=STEP, message="the session outlived Redis")
            assert (await request(session, "DELETE", url(server, response.headers["Location"])))[0] == 404


async def test_a_session_counts_as_a_connection_of_its_address(start_signaling: ServerFactory) -> None:
    server = await start_signaling(max_connections_per_ip=2, trusted_proxies="none")
    async with contextlib.AsyncExitStack() as stack, http() as session:
        alice, _ = await join(server, stack)  # one connection of 127.0.0.1
        post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, SDP))
        await answer_the_offer(alice)
        status, _, response = await post
        assert status == 201  # the second
        status, body, refused = await request(session, "POST", url(server, "/whip/r"), OFFER, SDP)
        assert status == 429 and int(refused.headers["Retry-After"]) >= 1, body
        assert (await request(session, "DELETE", url(server, response.headers["Location"])))[0] == 200
        await recv(alice)  # peer-left
        post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, SDP))
        await answer_the_offer(alice)
        assert (await post)[0] == 201


async def test_the_server_api_removes_a_session(start_signaling: ServerFactory) -> None:
    key = "k" * 40
    server = await start_signaling(api_key=key)
    async with contextlib.AsyncExitStack() as stack, http() as session:
        alice, _ = await join(server, stack)
        post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, SDP))
        whip = await answer_the_offer(alice)
        status, _, response = await post
        assert status == 201
        removal = url(server, f"/api/v1/rooms/r/peers/{whip['peer']}")
        assert (await request(session, "DELETE", removal, headers={"Authorization": "Bearer " + key}))[0] == 204
        assert await recv(alice) == {"type": "peer-left", "peer": whip["peer"]}
        assert (await request(session, "DELETE", url(server, response.headers["Location"])))[0] == 404


async def test_an_answer_that_is_no_sdp_is_a_502(start_signaling: ServerFactory) -> None:
    server = await start_signaling()
    async with contextlib.AsyncExitStack() as stack, http() as session:
        alice, _ = await join(server, stack)
        post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, SDP))
        joined = await recv(alice)
        assert (await recv(alice))["type"] == "offer"
        await alice.send(json.dumps({"type": "answer", "to": joined["peer"], "sdp": ""}))
        status, body, _ = await post
        assert status == 502 and "not an SDP answer" in body
        assert await recv(alice) == {"type": "peer-left", "peer": joined["peer"]}


async def test_each_trickled_candidate_counts_against_the_message_rate(start_signaling: ServerFactory) -> None:
    server = await start_signaling(rate_limit=0.01, rate_burst=4)
    async with contextlib.AsyncExitStack() as stack, http() as session:
        alice, _ = await join(server, stack)
        post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, SDP))
        await answer_the_offer(alice)
        status, _, response = await post
        assert status == 201
        frag = "".join(f"a=candidate:{i} 1 udp 1 127.0.0.1 {5000 + i} typ host\r\n" for i in range(6))
        status, _, refused = await request(session, "PATCH", url(server, response.headers["Location"]), frag, FRAG)
        assert status == 429 and refused.headers["Retry-After"] == "1"
        # The PATCH (which pays for its first candidate) and three more fit the burst of 4; the rest were refused.
        got = [(await recv(alice))["candidate"]["candidate"].split()[0] for _ in range(4)]
        assert got == ["candidate:0", "candidate:1", "candidate:2", "candidate:3"]
        await alice.send(json.dumps({"type": "ping"}))
        assert (await recv(alice))["type"] == "pong"  # nothing else was queued for her


async def test_the_backend_is_told_of_a_session_by_webhooks(start_signaling: ServerFactory) -> None:
    secret = new_secret()
    async with receiving(secret) as receiver:
        server = await start_signaling(webhook_urls=receiver.url, webhook_secret=secret)
        async with contextlib.AsyncExitStack() as stack, http() as session:
            alice, welcome = await join(server, stack)
            post = asyncio.ensure_future(request(session, "POST", url(server, "/whip/r"), OFFER, SDP))
            whip = await answer_the_offer(alice)
            status, _, response = await post
            assert status == 201
            assert (await request(session, "DELETE", url(server, response.headers["Location"])))[0] == 200
            events = await receiver.until(4)
        joined, left = events[2], events[3]
        assert joined["type"] == "peer.joined" and joined["data"]["peer"] == whip["peer"]
        assert joined["data"]["meta"] == {"kind": "whip"}
        assert (left["type"], left["data"]["peer"], left["data"]["reason"]) == ("peer.left", whip["peer"], "left")
        assert events[1]["data"]["peer"] == welcome["peer"]


async def test_the_cluster_example_proxy_keeps_a_session_on_its_node(
    start_signaling: ServerFactory, redis_settings: dict[str, str], tmp_path: Path
) -> None:
    """deploy/nginx/cluster.conf in front of two nodes: each session's PATCH and DELETE reach the node that took
    its POST (requests are spread by room), wherever the receiving peer is."""
    nodes = [await start_signaling(**redis_settings) for _ in range(2)]
    port = free_port()
    text = (ROOT / "deploy" / "nginx" / "cluster.conf").read_text()
    for letter, node in zip("ab", nodes, strict=True):
        text = text.replace(f"server signaling-{letter}:8765", f"server 127.0.0.1:{node.port}")
    (tmp_path / "site.conf").write_text(text.replace("listen 80;", f"listen 127.0.0.1:{port};"))
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    argv = ["nginx", "-g", "daemon off;", "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(main)]
    async with (
        async_running_process(argv, name="nginx", port=port, ok_returncodes=(0,)),
        contextlib.AsyncExitStack() as stack,
        http() as session,
        asyncio.timeout(6 * STEP),
    ):
        proxy = f"http://127.0.0.1:{port}"
        frag = f"a=mid:0\r\na={CANDIDATE}\r\n"
        for index in range(6):  # rooms hash to either node; a round robin would send some PATCHes astray
            room = f"room{index}"
            alice, _ = await join(nodes[index % 2], stack, room=room)
            post = asyncio.ensure_future(request(session, "POST", f"{proxy}/whip/{room}", OFFER, SDP))
            whip = await answer_the_offer(alice)
            status, _, response = await post
            assert status == 201
            location = proxy + response.headers["Location"]
            for _ in range(3):
                assert (await request(session, "PATCH", location, frag, FRAG))[0] == 204
                assert (await recv(alice))["from"] == whip["peer"]
            assert (await request(session, "DELETE", location))[0] == 200
            assert await recv(alice) == {"type": "peer-left", "peer": whip["peer"]}

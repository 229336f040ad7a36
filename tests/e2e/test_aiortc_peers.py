"""`signaling peer` (aiortc) end to end: real `signaling serve` and peer processes, on loopback only.

Each test asserts on what the peers *measured* and logged as JSON events: connection states, data-channel texts,
and decoded video frames whose test-pattern barcode (the sender's frame counter) was read back from the
picture, so a frame that did not really travel through encoder, network and decoder cannot pass. Every wait is
bounded (peer_helpers.WAIT); nothing sleeps for a fixed time, and only what announces nothing (another
process's log and counters, a link's replaceable connection) is polled, through tests/helpers/wait.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from signaling.clients.peer.link import ECHO_PREFIX, Link
from signaling.clients.peer.media import LocalMedia, PatternVideoTrack, decode_pattern
from signaling.clients.peer.options import PeerOptions
from signaling.clients.peer.runner import Peer
from signaling.clients.peer.sdp import candidate_from_init, restrict_host_addresses, sdp_candidates
from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.models import PeerJoined, RelayedAnswer, RelayedCandidate, RelayedOffer
from signaling.ws.aio.server import WebSocketServer
from tests.e2e.peer_helpers import (
    WAIT,
    Event,
    connection_state,
    events,
    of,
    peer_argv,
    running_peer,
    running_peers,
    self_id,
    until,
    wait_event,
    wait_for,
    wait_healthz,
)
from tests.helpers.server_process import ServerProcess, async_running_process, async_running_server

ServerFactory = Callable[..., Awaitable[WebSocketServer]]

#: Decoded frames each side must get from the other (15 fps: about 2 s of video).
MIN_FRAMES = 30
EMPTY_SERVER = {"connections": 0, "rooms": 0, "peers": 0}


def connected_to(remote: str) -> Callable[[list[Event]], list[Event]]:
    return lambda evs: of(evs, "peer_state", peer=remote, state="connected")


def frames_from(remote: str, at_least: int) -> Callable[[list[Event]], list[Event]]:
    def check(evs: list[Event]) -> list[Event]:
        got = of(evs, "frames_received", peer=remote)
        return got if got and got[-1]["count"] >= at_least else []

    return check


def assert_test_pattern(reports: list[Event]) -> None:
    """The frames were the sender's moving test pattern: its barcode read back, counting up as time passes."""
    counters = [r["pattern_frame"] for r in reports]
    assert all(isinstance(c, int) for c in counters), f"a frame without the test pattern: {reports}"
    assert counters == sorted(set(counters)), f"pattern frame counters do not increase: {counters}"
    for report in reports:
        # Counter of the sender >= frames decoded here - 1 (it starts at 0; frames may be lost, never invented).
        assert report["pattern_frame"] >= report["count"] - 1, report
        assert (report["width"], report["height"]) == (320, 240)
    assert counters[-1] - counters[0] >= MIN_FRAMES // 2, f"the picture hardly changed: {counters}"


def link_connected(link: Link) -> Callable[[], bool]:
    return lambda: link.pc.connectionState == "connected"  # link.pc is replaced on glare/restart: read it late


def texts_from(evs: list[Event], remote: str) -> list[str]:
    return [str(e["text"]) for e in of(evs, "datachannel_message", peer=remote)]


async def test_two_peers_connect_exchange_data_and_decoded_video() -> None:
    async with async_running_server() as srv:
        url = f"{srv.url}/ws"
        extra = ("--echo", "--hello-interval", "0.3")
        async with running_peers(url, "duo", "ab", *extra) as (a, b):
            a_id, b_id = await self_id(a), await self_id(b)
            await wait_for(a, connected_to(b_id), f"connected to {b_id}")
            await wait_for(b, connected_to(a_id), f"connected to {a_id}")

            # Data channel, both ways: each gets the other's hellos, and the echo of its own.
            for me, my_id, other_id in ((a, a_id, b_id), (b, b_id, a_id)):

                def both_ways(evs: list[Event], my_id: str = my_id, other_id: str = other_id) -> bool:
                    texts = texts_from(evs, other_id)
                    got_hello = any(t.startswith(f"hello from {other_id} #") for t in texts)
                    got_echo = any(t.startswith(f"{ECHO_PREFIX}hello from {my_id} #") for t in texts)
                    return got_hello and got_echo

                await wait_for(me, both_ways, f"hellos from {other_id} and echoes of our own")

            # Video, both ways, decoded and recognized as the test pattern.
            a_reports = await wait_for(a, frames_from(b_id, MIN_FRAMES), f"{MIN_FRAMES} frames from {b_id}")
            b_reports = await wait_for(b, frames_from(a_id, MIN_FRAMES), f"{MIN_FRAMES} frames from {a_id}")
            assert_test_pattern(a_reports)
            assert_test_pattern(b_reports)
            assert of(events(a), "audio_received", peer=b_id)
            assert of(events(b), "audio_received", peer=a_id)
            await wait_healthz(srv, {"connections": 2, "rooms": 1, "peers": 2})

        # Both peers got SIGTERM and exited 0 (checked by running_peer): they closed and left.
        for proc in (a, b):
            assert of(events(proc), "stopped", status=0)
        await wait_healthz(srv, EMPTY_SERVER)


async def test_three_peer_mesh_every_pair_connects() -> None:
    async with async_running_server() as srv:
        async with running_peers(f"{srv.url}/ws", "mesh", "abc", "--fps", "10") as started:
            procs = [(proc, await self_id(proc)) for proc in started]
            for proc, my_id in procs:
                for _, other_id in procs:
                    if other_id != my_id:
                        await wait_for(proc, connected_to(other_id), f"connected to {other_id}")
                        await wait_event(proc, "datachannel_open", peer=other_id)
                        await wait_for(proc, frames_from(other_id, 5), f"frames from {other_id}")
            await wait_healthz(srv, {"connections": 3, "rooms": 1, "peers": 3})
        await wait_healthz(srv, EMPTY_SERVER)


async def test_peer_dropping_tcp_mid_negotiation_leaves_nothing_behind() -> None:
    async with async_running_server() as srv:
        url = f"{srv.url}/ws"
        async with running_peers(url, "drop", "ab") as (a, b):
            b_id = await self_id(b)
            await wait_for(a, connected_to(b_id), f"connected to {b_id}")
            before = (await wait_for(a, frames_from(b_id, 1), "frames"))[-1]["count"]

            dropper_argv = [sys.executable, "-m", "tests.e2e.peer_helpers", "drop-client", "--url", url]
            async with async_running_process(
                [*dropper_argv, "--room", "drop"],
                name="dropper",
                ready_port=False,
                ready_log=r'"event": "offer_sent"',
                ok_returncodes=(-signal.SIGKILL,),
                must_stay_up=False,
            ) as dropper:
                dropper_id = re.findall(r'"self_id": "([^"]+)"', dropper.log_text())[0]
                # Both peers are mid-negotiation with it: they answered, ICE can never complete.
                for proc in (a, b):
                    await wait_event(proc, "answer_sent", peer=dropper_id)
                    assert not of(events(proc), "peer_state", peer=dropper_id, state="connected")
                await wait_healthz(srv, {"connections": 3, "peers": 3})
                # SIGKILL: the kernel closes its socket; no WebSocket close frame is ever sent.
                dropper.proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(dropper.proc.wait, WAIT)

            for proc in (a, b):
                await wait_event(proc, "peer_left", peer=dropper_id)
                await wait_event(proc, "peer_closed", peer=dropper_id)
                assert of(events(proc), "links")[-1]["count"] == 1  # only the other aiortc peer remains
            await wait_healthz(srv, {"connections": 2, "rooms": 1, "peers": 2})
            # The drop did not disturb the established pair: video keeps flowing.
            await wait_for(a, frames_from(b_id, before + 15), "more frames after the drop")
            assert not of(events(a), "peer_state", peer=b_id, state="closed")

        server_events = [e for e in _json_lines(srv.log_text()) if e.get("event") == "disconnected"]
        assert any(e.get("code") == 1006 for e in server_events), server_events  # the dropped TCP connection
        await wait_healthz(srv, EMPTY_SERVER)


async def test_peer_exits_0_after_duration_and_1_when_the_join_is_refused() -> None:
    async with async_running_server("--room-max-peers", "1") as srv:
        url = f"{srv.url}/ws"
        async with exiting_peer(peer_argv(url, "solo", "--duration", "2"), "timed", 0) as timed:
            await self_id(timed)
            async with exiting_peer(peer_argv(url, "solo"), "refused", 1) as refused:
                assert await refused.wait_async(WAIT) == 1
                assert of(events(refused), "join_failed", code="room-full")
            assert await timed.wait_async(WAIT) == 0
            assert of(events(timed), "stopped", status=0)
        await wait_healthz(srv, EMPTY_SERVER)


def exiting_peer(argv: list[str], label: str, status: int) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    """A peer process expected to end by itself with ``status``."""
    return async_running_process(
        argv,
        name=f"peer-{label}",
        ready_port=False,
        must_stay_up=False,
        ok_returncodes=(status,),
        env_drop_prefixes=("SIGNALING_",),
    )


def _json_lines(text: str) -> list[dict[str, Any]]:
    import json

    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


# ---------------------------------------------------------------------------------- in-process aiortc checks


@pytest.fixture
def loopback_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc in this test process gathers on 127.0.0.1 only (restored afterwards)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    restrict_host_addresses(["127.0.0.1"])


def _without_candidates(sdp: str) -> str:
    lines = [ln for ln in sdp.splitlines() if not ln.startswith(("a=candidate:", "a=end-of-candidates"))]
    return "\r\n".join(lines) + "\r\n"


async def test_peer_trickles_its_candidates_and_accepts_trickled_ones(loopback_candidates: None) -> None:
    """Offer SDP candidates == trickled ones, then null; an answer with *only* trickled candidates connects."""
    async with async_running_server() as srv, SignalingClient.connect(f"{srv.url}/ws") as client:
        await client.join("trickle", name="test")
        async with running_peer(f"{srv.url}/ws", "trickle", "p") as proc:
            peer_id = await self_id(proc)
            async with asyncio.timeout(WAIT):
                await client.expect(PeerJoined)
                offer = await client.expect(RelayedOffer)
                trickled: list[dict[str, Any]] = []
                while (msg := await client.expect(RelayedCandidate)).candidate is not None:
                    trickled.append(dict(msg.candidate))
            assert offer.from_ == peer_id
            in_sdp = sdp_candidates(offer.sdp)
            assert in_sdp and trickled == [dict(c) for c in in_sdp]
            assert all(" 127.0.0.1 " in c["candidate"] for c in trickled), "--host-address 127.0.0.1 not honoured"
            assert all(c["sdpMid"] is not None and c["sdpMLineIndex"] is not None for c in trickled)

            # Answer from an in-process aiortc peer, candidates stripped from both SDPs: trickle only.
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            try:
                await pc.setRemoteDescription(RTCSessionDescription(_without_candidates(offer.sdp), "offer"))
                for init in trickled:
                    await pc.addIceCandidate(candidate_from_init(init))  # type: ignore[arg-type]
                await pc.addIceCandidate(None)
                await pc.setLocalDescription(await pc.createAnswer())
                await client.send_answer(peer_id, _without_candidates(pc.localDescription.sdp))
                for cand in sdp_candidates(pc.localDescription.sdp):
                    await client.send_candidate(peer_id, cand)
                await client.send_candidate(peer_id, None)
                await wait_for(proc, connected_to(str(client.peer_id)), "connected with trickled candidates only")
                await connection_state(pc, "connected", "connection in the test process")
            finally:
                await pc.close()


async def test_glare_polite_side_replaces_its_connection(
    start_signaling: ServerFactory, loopback_candidates: None
) -> None:
    """Both sides offer at once: the impolite one ignores the other's offer, the polite one starts over."""
    server = await start_signaling()
    url = f"ws://127.0.0.1:{server.port}/ws"
    peers: list[Peer] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for _ in range(2):
            options = PeerOptions(url=url, room="glare", fps=10.0)
            client = await SignalingClient.connect(url)
            peer = Peer(options, client, LocalMedia(options))
            welcome = await client.join("glare")
            peer.id, peer.ice_servers = welcome.peer, list(welcome.iceServers)
            peers.append(peer)
        first, second = peers
        async with asyncio.timeout(WAIT):
            await first.client.expect(PeerJoined)
        # Both believe they are the newcomer, so both offer before either sees the other's offer.
        links = [first.link(second.id, initiator=True), second.link(first.id, initiator=True)]
        tasks = [asyncio.create_task(p._serve_signals()) for p in peers]
        await until(lambda: all(link.pc.connectionState == "connected" for link in links), "both connected")
        polite = next(link for link in links if link.polite)
        impolite = next(link for link in links if not link.polite)
        assert (polite.replacements, impolite.replacements) == (1, 0)
        assert impolite.offers_received == 1 and polite.offers_received == 1
    finally:
        for task in tasks:
            task.cancel()
        for peer in peers:
            await peer.shutdown()
            await peer.client.close()
            peer.media.close()


@contextlib.asynccontextmanager
async def peer_and_remote(start_signaling: ServerFactory, room: str) -> AsyncIterator[tuple[Peer, SignalingClient]]:
    """A Peer joined to ``room`` and serving its signaling, and a bare client (the remote) that has not joined yet."""
    server = await start_signaling()
    url = f"ws://127.0.0.1:{server.port}/ws"
    options = PeerOptions(url=url, room=room, fps=10.0)
    async with SignalingClient.connect(url) as peer_client, SignalingClient.connect(url) as remote:
        peer = Peer(options, peer_client, LocalMedia(options))
        welcome = await peer_client.join(room)
        peer.id, peer.ice_servers = welcome.peer, []
        task = asyncio.create_task(peer._serve_signals())
        try:
            yield peer, remote
        finally:
            task.cancel()
            await peer.shutdown()
            peer.media.close()


async def test_answer_only_peer_gets_a_fallback_offer(
    start_signaling: ServerFactory, loopback_candidates: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer that never offers (it only answers) still gets connected: the waiting side offers itself."""
    import signaling.clients.peer.link

    monkeypatch.setattr(signaling.clients.peer.link, "FALLBACK_OFFER_S", 0.2)
    async with peer_and_remote(start_signaling, "fallback") as (peer, newcomer):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            await newcomer.join("fallback")
            async with asyncio.timeout(WAIT):
                offer = await newcomer.expect(RelayedOffer)
            assert offer.from_ == peer.id
            await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await newcomer.send_answer(peer.id, pc.localDescription.sdp)
            link = peer.links[str(newcomer.peer_id)]
            await until(link_connected(link), "connection after the fallback offer")
            assert link.initiator  # it took over the offer
        finally:
            await pc.close()


@pytest.mark.parametrize("close_old", [True, False], ids=["old-closed", "old-still-open"])
async def test_remote_that_starts_over_gets_a_fresh_connection(
    start_signaling: ServerFactory, loopback_candidates: None, close_old: bool
) -> None:
    """A remote that makes a new RTCPeerConnection (new DTLS fingerprint) and offers again is answered anew.

    Browsers do this after a failed link; aiortc cannot renegotiate ICE and DTLS on the old connection.
    Whether the old connection was closed (our side sees it closed) or not (only the fingerprint tells).
    """
    async with peer_and_remote(start_signaling, "restart") as (peer, remote):
        pcs: list[RTCPeerConnection] = []
        try:
            await remote.join("restart")
            for attempt in range(2):
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                pcs.append(pc)
                pc.addTransceiver("video", direction="recvonly")
                await pc.setLocalDescription(await pc.createOffer())
                await remote.send_offer(peer.id, pc.localDescription.sdp)
                async with asyncio.timeout(WAIT):
                    while not isinstance(answer := await remote.recv(), RelayedAnswer):
                        pass
                await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
                link = peer.links[str(remote.peer_id)]
                await connection_state(pc, "connected", f"connection #{attempt + 1}")
                await until(link_connected(link), "the peer's side connected")
                assert link.replacements == attempt
                if attempt == 0 and close_old:
                    await pc.close()  # the remote starts over, as a browser does after a failure
        finally:
            for pc in pcs:
                await pc.close()


def test_test_pattern_survives_a_round_trip_through_vp8() -> None:
    """The barcode is read back after lossy coding, and frames that are not the pattern read as None."""
    import av
    import numpy

    track = PatternVideoTrack(320, 240, 15.0)
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = 320, 240, "yuv420p"
    codec.bit_rate = 300_000
    decoder = av.CodecContext.create("libvpx", "r")
    decoded = []
    for n in (0, 1, 2, 99, 1234, 65535):
        frame = track.render(n)
        frame.pts = n
        for packet in codec.encode(frame):
            decoded.extend(decoder.decode(packet))
    for packet in codec.encode(None):
        decoded.extend(decoder.decode(packet))
    assert [decode_pattern(f) for f in decoded] == [0, 1, 2, 99, 1234, 65535]
    # All black: no sync blocks. (Made from zeros: a new VideoFrame's buffer is not cleared, and may hold the last
    # frame's pixels.)
    black = av.VideoFrame.from_ndarray(numpy.zeros((240 * 3 // 2, 320), numpy.uint8), format="yuv420p")
    assert decode_pattern(black) is None

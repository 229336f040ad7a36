"""A WHIP publisher and a WHEP player written here from RFC 9725 (one POST of a complete offer, the answer in the
201, DELETE to end), on aiortc, with `signaling peer` in the room as the receiving (or publishing) peer: real
media both ways, decoded and recognized as the test pattern. Loopback candidates only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from signaling.clients.peer.media import PatternVideoTrack, ToneAudioTrack, decode_pattern
from signaling.clients.peer.sdp import restrict_host_addresses
from tests.e2e.peer_helpers import (
    WAIT,
    Event,
    connection_state,
    of,
    running_peer,
    self_id,
    wait_event,
    wait_for,
)
from tests.helpers.server_process import async_running_server

#: Frames the receiving side must decode (15 fps: about 2 s of video).
MIN_FRAMES = 30


@pytest.fixture
def loopback_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc in this test process gathers on 127.0.0.1 only (restored afterwards)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    restrict_host_addresses(["127.0.0.1"])


def frames_from(remote: str, at_least: int) -> Callable[[list[Event]], list[Event]]:
    def check(evs: list[Event]) -> list[Event]:
        got = of(evs, "frames_received", peer=remote)
        return got if got and got[-1]["count"] >= at_least else []

    return check


async def post_offer(http: aiohttp.ClientSession, url: str, pc: RTCPeerConnection) -> tuple[str, str]:
    """RFC 9725 4.2: POST the offer (aiortc gathers every candidate into it); the answer and the Location."""
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    async with http.post(url, data=pc.localDescription.sdp, headers=headers) as response:
        body = await response.text()
        assert response.status == 201, (response.status, body)
        assert response.content_type == "application/sdp"
        location = response.headers["Location"]
        assert response.headers["ETag"].startswith('"')
    # The receiving peer cannot trickle to us: its candidates are in the answer.
    assert "a=candidate:" in body
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return body, location


async def test_an_aiortc_whip_publisher_streams_into_a_room(loopback_candidates: None) -> None:
    async with (
        async_running_server() as srv,
        running_peer(f"{srv.url}/ws", "show", "p") as proc,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http,
    ):
        await self_id(proc)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
            pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
            _, location = await post_offer(http, f"{srv.http_url}/whip/show", pc)
            await connection_state(pc, "connected", "the publisher connected")
            joined = await wait_event(proc, "peer_joined")
            assert joined["meta"] == {"kind": "whip"}
            publisher = joined["peer"]
            reports = await wait_for(proc, frames_from(publisher, MIN_FRAMES), f"{MIN_FRAMES} frames")
            counters = [r["pattern_frame"] for r in reports]
            assert all(isinstance(c, int) for c in counters) and counters == sorted(set(counters)), counters
            await wait_event(proc, "audio_received", peer=publisher)
            async with http.delete(srv.http_url + location) as response:
                assert response.status == 200
            await wait_event(proc, "peer_left", peer=publisher)
            async with http.delete(srv.http_url + location) as response:
                assert response.status == 404
        finally:
            await pc.close()


async def test_an_aiortc_whep_player_watches_a_peer(loopback_candidates: None) -> None:
    async with (
        async_running_server() as srv,
        running_peer(f"{srv.url}/ws", "show", "p") as proc,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http,
    ):
        publisher = await self_id(proc)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
        pc.on("track", tracks.put_nowait)
        try:
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            _, location = await post_offer(http, f"{srv.http_url}/whep/show?peer={publisher}", pc)
            await connection_state(pc, "connected", "the player connected")
            async with asyncio.timeout(WAIT):
                video = await tracks.get()
                while video.kind != "video":
                    video = await tracks.get()
                decoded = [decode_pattern(await video.recv()) for _ in range(MIN_FRAMES)]  # type: ignore[arg-type]
            counters = [c for c in decoded if c is not None]
            assert len(counters) == len(decoded), f"a frame without the test pattern: {decoded}"
            assert counters == sorted(counters) and counters[-1] > counters[0], counters
            async with http.delete(srv.http_url + location) as response:
                assert response.status == 200
            joined = await wait_event(proc, "peer_joined")
            assert joined["meta"] == {"kind": "whep"}
            await wait_event(proc, "peer_left", peer=joined["peer"])
        finally:
            await pc.close()


async def test_a_publisher_gone_without_delete_leaves_the_room(loopback_candidates: None) -> None:
    """No DELETE: the receiving peer sees the media end (here the publisher closes DTLS; a vanished one fails ICE
    consent after about 30 s) and tells the session, which leaves."""
    async with (
        async_running_server() as srv,
        running_peer(f"{srv.url}/ws", "show", "p") as proc,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http,
    ):
        await self_id(proc)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
        _, location = await post_offer(http, f"{srv.http_url}/whip/show", pc)
        await connection_state(pc, "connected", "the publisher connected")
        publisher = (await wait_event(proc, "peer_joined"))["peer"]
        await wait_for(proc, frames_from(publisher, 5), "frames")
        await pc.close()
        await wait_event(proc, "endpoint_media_failed", peer=publisher)
        await wait_event(proc, "peer_left", peer=publisher)
        async with http.delete(srv.http_url + location) as response:
            assert response.status == 404

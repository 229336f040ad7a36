"""A WHIP/WHEP client from npm (whip-whep, medooze: tests/interop/whip/, installed by `make test-deps`) in
Chromium, on a page of another origin (so CORS and the Origin allow-list are in play), against the demo page
(web/) in a room: the fake camera published into the call, and a demo page's camera played back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from playwright.async_api import BrowserContext, Page

from signaling.ws.aio.server import WebSocketServer
from tests.e2e.demo_helpers import CONNECT_TIMEOUT_S, VIDEO_TIMEOUT_S, open_call, unique_room

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
ContextFactory = Callable[..., Awaitable[BrowserContext]]

CLIENT_DIR = Path(__file__).resolve().parents[1] / "interop" / "whip"
#: Video frames the receiving side must decode (Chromium's fake camera runs at 30 fps: about 2 s).
MIN_FRAMES = 60


async def client_page(new_context: ContextFactory, start_signaling: ServerFactory) -> tuple[Page, str]:
    """The npm client's page, served by a server of its own (another origin); returns it and its origin."""
    assert (CLIENT_DIR / "node_modules" / "whip-whep" / "whip.js").is_file(), (
        "the npm WHIP client is not installed: run `make test-deps` (tests/interop/whip/install.sh)"
    )
    pages = await start_signaling(web_root=CLIENT_DIR)
    origin = f"http://127.0.0.1:{pages.port}"
    page = await (await new_context()).new_page()
    response = await page.goto(origin + "/index.html")
    assert response is not None and response.ok
    await page.wait_for_function("() => typeof window.publish === 'function'")
    return page, origin


async def test_an_npm_whip_client_publishes_its_camera_into_a_call(
    start_signaling: ServerFactory, new_context: ContextFactory
) -> None:
    publisher, origin = await client_page(new_context, start_signaling)
    server = await start_signaling(allowed_origins=[origin])
    room = unique_room("whip")
    alice = await open_call(new_context, server.port, room, "Alice")
    await alice.wait_status("joined")
    location = await publisher.evaluate("url => window.publish(url)", f"http://127.0.0.1:{server.port}/whip/{room}")
    assert location.startswith(f"http://127.0.0.1:{server.port}/whip/{room}/")
    # The demo page answered (with its candidates), took the trickled ones, and decodes the camera.
    await alice.wait_connected(1, channel=False)
    readings = await alice.wait_video(1)
    whip_peer = next(iter(readings))
    kind = await alice.page.evaluate("id => window.app.client.peers.get(id).meta.kind", whip_peer)
    assert kind == "whip"
    name = alice.page.locator(f"#tiles .tile[data-peer='{whip_peer}'] [data-role=name]")
    assert await name.inner_text() == "Broadcast (WHIP)"
    await publisher.wait_for_function(f"() => window.media.framesSent > {MIN_FRAMES}", timeout=VIDEO_TIMEOUT_S * 1000)
    # The demo page sent it nothing to play: a WHIP session only publishes.
    link = await alice.page.evaluate("id => window.app.peers[id]", whip_peer)
    assert link["candidatesSent"] == 0 and link["offersSent"] == 0
    await publisher.evaluate("() => window.stop()")  # DELETE: the synthetic peer leaves the room
    await alice.wait_tile_gone(whip_peer, timeout_s=CONNECT_TIMEOUT_S)


async def test_an_npm_whep_client_plays_a_demo_pages_camera(
    start_signaling: ServerFactory, new_context: ContextFactory
) -> None:
    player, origin = await client_page(new_context, start_signaling)
    server = await start_signaling(allowed_origins=[origin])
    room = unique_room("whep")
    alice = await open_call(new_context, server.port, room, "Alice")
    await alice.wait_status("joined")
    await player.evaluate("url => window.play(url)", f"http://127.0.0.1:{server.port}/whep/{room}")
    await player.wait_for_function(
        f"() => window.media.framesDecoded > {MIN_FRAMES} && window.media.width > 0", timeout=VIDEO_TIMEOUT_S * 1000
    )
    await alice.wait_connected(1, channel=False)
    (whep_peer,) = await alice.tile_peers()
    await player.evaluate("() => window.stop()")
    await alice.wait_tile_gone(whep_peer, timeout_s=CONNECT_TIMEOUT_S)


async def test_a_publisher_that_closes_without_delete_leaves_the_call(
    start_signaling: ServerFactory, new_context: ContextFactory
) -> None:
    """No DELETE: the demo page sees the media stay disconnected (ENDPOINT_DISCONNECTED_MS, 10 s) and tells the
    session (``ended``), which leaves the room."""
    publisher, origin = await client_page(new_context, start_signaling)
    server = await start_signaling(allowed_origins=[origin])
    room = unique_room("whip")
    alice = await open_call(new_context, server.port, room, "Alice")
    await alice.wait_status("joined")
    await publisher.evaluate("url => window.publish(url)", f"http://127.0.0.1:{server.port}/whip/{room}")
    await alice.wait_connected(1, channel=False)
    (whip_peer,) = await alice.tile_peers()
    await publisher.close()  # the tab goes: its RTCPeerConnection ends DTLS, and nobody sends DELETE
    await alice.wait_tile_gone(whip_peer, timeout_s=10 + CONNECT_TIMEOUT_S)
    assert whip_peer not in await alice.page.evaluate("() => [...window.app.client.peers.keys()]")

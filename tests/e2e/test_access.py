"""Access control as a browser meets it: room tokens on the demo page, and pages of other origins refused.

A page of another origin is simply another server's page (another port is another origin): its script opens a
WebSocket to the signaling server, the way a hostile site would with the visitor's browser.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from signaling.rooms.auth import RoomTokens
from signaling.ws.aio.server import WebSocketServer
from tests.e2e.conftest import BrowserErrors
from tests.e2e.demo_helpers import WS_CONNECT_FAILED, ContextFactory, open_call, unique_room

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
SECRET = "a-demo-secret-long-enough-for-hs256-xx"
OPEN_FROM_PAGE = """async (url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.close(); resolve("open"); };
    ws.onclose = (ev) => resolve(`closed ${ev.code}`);
})"""


async def test_the_demo_page_joins_with_its_token_and_says_why_without(
    start_signaling: ServerFactory, new_context: ContextFactory
) -> None:
    server = await start_signaling(auth_secret=SECRET)
    room = unique_room("auth")
    token = RoomTokens(SECRET).issue(room, 600, time.time(), name="Ada From Token")
    alice = await open_call(new_context, server.port, room, "Spoofed", params={"token": token})
    await alice.wait_status("joined")
    assert await alice.page.evaluate("() => window.app.state.selfId") is not None
    stranger = await open_call(new_context, server.port, room, "Mallory")
    await stranger.page.wait_for_selector("#notice[data-code=unauthorized]", timeout=10_000)
    notice = await stranger.page.locator("#notice-text").inner_text()
    assert "not allowed to join this room" in notice
    await alice.wait_connected(0, channel=False)  # the stranger never became a peer
    names = await alice.page.evaluate("() => [...window.app.client.peers.values()].map(p => p.name)")
    assert names == []


async def test_a_page_of_another_origin_cannot_open_the_socket(
    start_signaling: ServerFactory, new_context: ContextFactory, browser_errors: BrowserErrors
) -> None:
    browser_errors.allow(WS_CONNECT_FAILED)  # the refused handshake, as Chromium reports it
    target = await start_signaling()
    elsewhere = await start_signaling()  # serves the demo files too: its page is a page of another origin
    url = f"ws://127.0.0.1:{target.port}/ws"
    context = await new_context()
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{elsewhere.port}/")
    assert await page.evaluate(OPEN_FROM_PAGE, url) == "closed 1006"
    await page.goto(f"http://127.0.0.1:{target.port}/")  # the server's own page is its own origin
    assert await page.evaluate(OPEN_FROM_PAGE, url) == "open"
    allowing = await start_signaling(allowed_origins=f"http://127.0.0.1:{elsewhere.port}")
    await page.goto(f"http://127.0.0.1:{elsewhere.port}/")
    assert await page.evaluate(OPEN_FROM_PAGE, f"ws://127.0.0.1:{allowing.port}/ws") == "open"

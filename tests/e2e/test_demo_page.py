"""The demo call page (web/) in real Chromium with fake camera and microphone, end to end.

Every page is its own browser context (a separate "user") on ``http://127.0.0.1:PORT/?room=R&name=N``, served
by the signaling server under test, which also relays the call's signaling on ``/ws``. Assertions go through
the page's stable test hooks (see web/app.js and tests/e2e/demo_helpers.py): tile ``data-state`` for the
RTCPeerConnection, ``framesDecoded`` rising plus ``videoWidth`` > 0 for remote video, ``#chat-log`` entries
for the data channel, ``#status[data-state]`` for the signaling client.

Console errors and uncaught page errors fail any of these tests (tests/e2e/conftest.py); only the restart test
allows Chromium's own "WebSocket connection ... failed" lines, which it logs while the server is down.

Screenshots of a two-party call (1280x800 and 375 px wide) go to test-artifacts/e2e/screenshots/.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from playwright.async_api import Browser

from signaling.ws.aio.server import WebSocketServer
from tests.e2e.demo_helpers import (
    SCREENSHOTS_DIR,
    WS_CONNECT_FAILED,
    CallPage,
    ContextFactory,
    log_events,
    open_call,
    unique_room,
)
from tests.e2e.peer_helpers import peer_argv
from tests.helpers.server_process import ServerProcess, async_running_process, async_running_server
from tests.helpers.wait import wait_until

if TYPE_CHECKING:
    from tests.e2e.conftest import BrowserErrors

ServerFactory = Callable[..., Awaitable[WebSocketServer]]


async def both(*waits: Awaitable[object]) -> None:
    """Run waits on several pages at once (each is bounded by its own timeout)."""
    await asyncio.gather(*waits)


async def call_of_two(new_context: ContextFactory, port: int, room: str) -> tuple[CallPage, CallPage]:
    """Alice and Bob in ``room``, connected and each playing the other's video."""
    alice = await open_call(new_context, port, room, "Alice")
    bob = await open_call(new_context, port, room, "Bob")
    await both(alice.wait_connected(1), bob.wait_connected(1))
    await both(alice.wait_video(1), bob.wait_video(1))
    return alice, bob


async def assert_tile_names(page: CallPage, expected: dict[str, str]) -> None:
    """The remote tiles are exactly ``expected`` (peer id -> shown name)."""
    names = await page.page.eval_on_selector_all(
        "#tiles .tile[data-peer]",
        "ts => Object.fromEntries(ts.map(t => [t.dataset.peer, t.querySelector('[data-role=name]').textContent]))",
    )
    assert names == expected, f"{page.label}: tiles {names}, expected {expected}"


# --------------------------------------------------------------------------------------------- the tests


async def test_two_pages_connect_and_play_each_others_video(
    start_signaling: ServerFactory, new_context: ContextFactory
) -> None:
    server = await start_signaling()
    alice, bob = await call_of_two(new_context, server.port, unique_room("two"))
    assert await alice.status() == await bob.status() == "joined"
    await assert_tile_names(alice, {await bob.self_id(): "Bob"})
    await assert_tile_names(bob, {await alice.self_id(): "Alice"})
    # The stats panel shows the selected candidate pair: host candidates on loopback, no STUN/TURN here.
    stats = alice.page.locator("#tiles .tile[data-peer] [data-role=stats]")
    await alice.page.wait_for_function(
        "() => document.querySelector('#tiles .tile[data-peer] [data-role=stats]')?.dataset.localType",
        timeout=10_000,
    )
    assert await stats.get_attribute("data-local-type") == "host"
    assert await stats.get_attribute("data-remote-type") == "host"


async def test_page_and_aiortc_peer_exchange_video_and_echo_chat(
    start_signaling: ServerFactory, new_context: ContextFactory
) -> None:
    server = await start_signaling()
    room = unique_room("aiortc")
    argv = peer_argv(f"ws://127.0.0.1:{server.port}/ws", room, "--echo", "--name", "robot")
    async with async_running_process(
        argv, name="aiortc-peer", ready_port=False, ready_log=r'"event": "joined"'
    ) as peer:
        robot_id = log_events(peer.log_text(), "joined")[0]["self_id"]
        page = await open_call(new_context, server.port, room, "Alice")  # the newcomer: the page offers

        await page.wait_connected(1)  # connected, and the peer's answer-side "chat" channel is open
        await assert_tile_names(page, {robot_id: "robot"})
        readings = await page.wait_video(1)
        assert readings[robot_id]["videoWidth"] > 0, readings

        # A text sent on the data channel comes back as 'echo:<text>'; once through window.app, once typed.
        sent = await page.page.evaluate("t => window.app.sendChat(t)", "hello aiortc")
        assert sent == 1
        echoed = await page.wait_chat("in", "echo:hello aiortc")
        assert echoed["via"] == "datachannel" and echoed["from"] == robot_id, echoed
        await page.page.locator("#chat-input").fill("typed in the form")
        await page.page.locator("#chat-input").press("Enter")
        await page.wait_chat("out", "typed in the form")
        await page.wait_chat("in", "echo:typed in the form")

        # And the other direction: aiortc decodes the browser's camera.
        await wait_for_log(
            peer, lambda: any(e.get("count", 0) > 0 for e in log_events(peer.log_text(), "frames_received"))
        )
        alice_id = await page.self_id()
        states = log_events(peer.log_text(), "peer_state")
        assert any(e.get("peer") == alice_id and e.get("state") == "connected" for e in states), states


async def wait_for_log(process: ServerProcess, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``process``'s log file (another process writes it; nothing announces a new line) until ``predicate()``."""
    await wait_until(
        predicate, timeout=timeout_s, interval=0.1, message=lambda: f"condition not met\n{process.describe()}"
    )


async def test_three_pages_form_a_full_mesh(start_signaling: ServerFactory, new_context: ContextFactory) -> None:
    server = await start_signaling()
    room = unique_room("mesh")
    pages = [await open_call(new_context, server.port, room, name) for name in ("Alice", "Bob", "Carol")]

    await both(*(p.wait_connected(2) for p in pages))
    await both(*(p.wait_video(2) for p in pages))

    ids = {p.label: await p.self_id() for p in pages}
    for p in pages:
        await assert_tile_names(p, {ids[q.label]: q.label for q in pages if q is not p})


async def test_reloaded_page_leaves_and_rejoins(start_signaling: ServerFactory, new_context: ContextFactory) -> None:
    server = await start_signaling()
    alice, bob = await call_of_two(new_context, server.port, unique_room("reload"))
    old_bob = await bob.self_id()

    await bob.page.reload()
    await bob.page.wait_for_function("() => window.app !== undefined")
    await bob.wait_status("joined")
    new_bob = await bob.self_id()
    assert new_bob != old_bob  # a fresh page is a fresh session

    await alice.wait_tile_gone(old_bob)  # Alice saw the old Bob leave...
    await both(alice.wait_connected(1), bob.wait_connected(1))
    assert await alice.tile_peers() == [new_bob]  # ...and the new one arrive
    await both(alice.wait_video(1), bob.wait_video(1))


async def test_client_reconnects_and_rejoins_after_a_server_restart(
    new_context: ContextFactory, browser_errors: BrowserErrors
) -> None:
    browser_errors.allow(WS_CONNECT_FAILED)  # Chromium logs every refused attempt while the server is down
    room = unique_room("restart")
    async with async_running_server() as first:
        port = first.port
        alice = await open_call(new_context, port, room, "Alice")
        bob = await open_call(new_context, port, room, "Bob")
        await both(alice.wait_connected(1), bob.wait_connected(1))
        assert await alice.page.evaluate("() => window.app.state.welcomes") == 1

        await first.stop_async()
        await both(alice.wait_status("reconnecting"), bob.wait_status("reconnecting"))

    # Same port, new process: no state survives, so both pages re-join as new sessions by themselves.
    async with async_running_server(port=port):
        await both(alice.wait_status("joined", timeout_s=30), bob.wait_status("joined", timeout_s=30))
        for p in (alice, bob):
            assert await p.page.evaluate("() => window.app.state.welcomes") == 2
        await both(alice.wait_connected(1), bob.wait_connected(1))
        assert await alice.tile_peers() == [await bob.self_id()]
        assert await bob.tile_peers() == [await alice.self_id()]
        await both(alice.wait_video(1), bob.wait_video(1))
        for p in (alice, bob):  # leave while the server is up, so the pages do not retry after it stops
            await p.context.close()


async def test_camera_denied_joins_receive_only(
    launch_browser: Callable[..., Awaitable[Browser]], start_signaling: ServerFactory, new_context: ContextFactory
) -> None:
    # Without --use-fake-ui-for-media-stream nothing grants the camera, and the context grants no permission:
    # getUserMedia fails with NotAllowedError, as when a user clicks "Block".
    no_prompt = await launch_browser(drop_args=["--use-fake-ui-for-media-stream"])
    server = await start_signaling()
    room = unique_room("denied")
    alice = await open_call(new_context, server.port, room, "Alice")
    denied_ctx = await new_context(in_browser=no_prompt, permissions=[], viewport={"width": 1280, "height": 800})
    carol = await open_call(new_context, server.port, room, "Carol", context=denied_ctx)

    error = carol.page.locator("#media-error")
    await error.wait_for(state="visible", timeout=10_000)
    assert await error.get_attribute("data-reason") == "denied"
    assert "denied" in (await error.inner_text())
    media_error = await carol.page.evaluate("() => window.app.snapshot().mediaError")
    assert media_error["name"] == "NotAllowedError", media_error

    await both(alice.wait_connected(1), carol.wait_connected(1))
    await carol.wait_video(1)  # receive-only, but it sees Alice
    carol_tile = alice.page.locator(f'#tiles .tile[data-peer="{await carol.self_id()}"]')
    assert await carol_tile.get_attribute("data-video") == "off"  # and Alice sees no video from Carol
    assert await carol.page.locator("#btn-camera").is_disabled()
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    await carol.page.screenshot(path=SCREENSHOTS_DIR / "camera-denied-1280x800.png")


async def test_screenshots_of_a_call_wide_and_375px(
    start_signaling: ServerFactory, new_context: ContextFactory
) -> None:
    server = await start_signaling()
    room = unique_room("shots")
    wide = await open_call(new_context, server.port, room, "Alice", viewport={"width": 1280, "height": 800})
    narrow = await open_call(new_context, server.port, room, "Bob", viewport={"width": 375, "height": 812})
    await both(wide.wait_connected(1), narrow.wait_connected(1))
    await both(wide.wait_video(1), narrow.wait_video(1))
    await wide.page.evaluate("() => window.app.sendChat('Hi Bob, can you see me?')")
    await narrow.wait_chat("in", "Hi Bob, can you see me?")
    for p in (wide, narrow):  # the stats panel has figures in it
        await p.page.wait_for_function(
            "() => document.querySelector('#tiles .tile[data-peer] [data-role=stats]')?.dataset.rtt",
            timeout=10_000,
        )

    # Readable at 375 px: nothing wider than the screen (no sideways scrolling).
    widths = await narrow.page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"page is {widths[0]} px wide in a {widths[1]} px viewport"

    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    await wide.page.screenshot(path=SCREENSHOTS_DIR / "call-1280x800.png")
    await narrow.page.screenshot(path=SCREENSHOTS_DIR / "call-375.png")
    await narrow.page.screenshot(path=SCREENSHOTS_DIR / "call-375-full.png", full_page=True)
    await narrow.page.locator("#btn-chat").click()
    await narrow.page.screenshot(path=SCREENSHOTS_DIR / "call-375-chat.png")
    for name in ("call-1280x800.png", "call-375.png", "call-375-full.png", "call-375-chat.png"):
        assert (SCREENSHOTS_DIR / name).stat().st_size > 10_000, name

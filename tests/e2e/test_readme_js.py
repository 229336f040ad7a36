"""The README's browser example (tests/helpers/readme.py, mode ``js``) runs as written, in Chromium, as a module
on a page of a live server, while another peer is in the room: it must end without a page error, having joined
and greeted that peer."""

from __future__ import annotations

import json

from playwright.async_api import BrowserContext

from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.models import PeerJoined, PeerLeft, RelayedMessage
from signaling.ws.aio.server import WebSocketServer
from tests.helpers.readme import readme_blocks

DONE = "window.__readmeExample = 'done';"


async def test_the_readme_browser_example_runs(signaling_server: WebSocketServer, context: BrowserContext) -> None:
    (block,) = [b for b in readme_blocks() if b.mode == "js"]
    url = f"http://127.0.0.1:{signaling_server.port}"
    async with SignalingClient.connect(f"ws://127.0.0.1:{signaling_server.port}/ws") as bob:
        await bob.join("demo", name="Bob")
        page = await context.new_page()
        await page.goto(url + "/")  # the demo page: signaling-client.js is served next to it
        await page.add_script_tag(content=block.code + DONE, type="module")
        await page.wait_for_function("() => window.__readmeExample === 'done'", timeout=15_000)
        ada = (await bob.expect(PeerJoined)).peer
        got = [await bob.recv() for _ in range(2)]  # the broadcast, then Ada leaving
        assert isinstance(got[0], RelayedMessage) and got[0].from_ == ada and got[0].data == {"hello": "everyone"}
        assert isinstance(got[1], PeerLeft) and got[1].peer == ada, json.dumps(str(got))

"""Yjs documents synced by the real y-webrtc provider in Chromium, through our /y-webrtc endpoint.

y-webrtc and yjs come from npm (tests/interop/ywebrtc/package-lock.json), bundled by esbuild into one script
(``make test-deps`` runs tests/interop/ywebrtc/install.sh) that the signaling server serves beside the page, so
nothing is fetched from elsewhere. Two browser contexts share no BroadcastChannel, so the documents can only meet
through signaling and a WebRTC data channel (loopback candidates, no ICE servers): text typed into one appears in
the other, in the clear, with a ``password`` (y-webrtc then encrypts what it publishes), and with the two pages on
two nodes of a cluster.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page

from signaling.rooms.auth import RoomTokens
from signaling.ws.aio.client import connect
from signaling.ws.aio.server import WebSocketServer
from tests.helpers.inprocess import server_url
from tests.helpers.readme import readme_blocks
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(90)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
ContextFactory = Callable[..., Awaitable[BrowserContext]]

PAGE = Path(__file__).resolve().parent / "pages" / "ywebrtc" / "index.html"
BUNDLE = Path(__file__).resolve().parents[1] / "interop" / "ywebrtc" / "dist" / "ywebrtc.js"
SYNC_MS = 30_000
#: What the README's example is run with here: the bundle's exports for its imports, this server for its URL, and
#: no ICE servers (loopback candidates only; nothing leaves the machine).
README_URL = "wss://signaling.example.com/y-webrtc"
README_IMPORTS = (
    ('import * as Y from "yjs";', "const Y = window.YW;"),
    ('import { WebrtcProvider } from "y-webrtc";', "const { WebrtcProvider } = window.YW;"),
    ("signaling: [", "peerOpts: { config: { iceServers: [] } }, signaling: ["),
)


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    """The page and the bundle, for the signaling server to serve (its own origin: the Origin check passes)."""
    if not BUNDLE.is_file():
        pytest.fail(f"{BUNDLE} is missing: run `make test-deps` (tests/interop/ywebrtc/install.sh)", pytrace=False)
    root = tmp_path / "web"
    root.mkdir()
    shutil.copy(PAGE, root / "index.html")
    shutil.copy(BUNDLE, root / "ywebrtc.js")
    return root


async def open_doc(
    new_context: ContextFactory, server: WebSocketServer, room: str, password: str | None, query: str = ""
) -> Page:
    page = await (await new_context()).new_page()
    await page.goto(server_url(server, "/index.html"))
    await page.evaluate(
        "([url, room, password]) => window.open_doc(url, room, password)",
        [server_url(server, "/y-webrtc", ws=True) + query, room, password],
    )
    return page


async def edits_meet(a: Page, b: Page) -> None:
    """Each page types; the other sees it, over a WebRTC connection between them."""
    await a.evaluate("window.text.insert(0, 'hello from a')")
    await b.wait_for_function("window.text.toString().includes('hello from a')", timeout=SYNC_MS)
    await b.evaluate("window.text.insert(window.text.length, ' and b')")
    await a.wait_for_function("window.text.toString() === 'hello from a and b'", timeout=SYNC_MS)
    for page in (a, b):
        assert await page.evaluate("window.webrtc_peers()") == 1


async def leave(*pages: Page) -> None:
    """Before the servers stop, or the providers' reconnection attempts would be console errors."""
    for page in pages:
        await page.evaluate("window.provider.disconnect(); window.provider.destroy()")


@pytest.mark.parametrize("password", [None, "correct horse battery staple"])
async def test_two_browsers_edit_one_document(
    new_context: ContextFactory, start_signaling: ServerFactory, web_root: Path, password: str | None
) -> None:
    server = await start_signaling(web_root=web_root)
    async with connect(server_url(server, "/y-webrtc", ws=True)) as observer:  # sees what the server sees
        await observer.send(json.dumps({"type": "subscribe", "topics": ["yjs-doc"]}))
        await observer.send('{"type":"ping"}')
        assert json.loads(await observer.recv()) == {"type": "pong"}  # subscribed
        a = await open_doc(new_context, server, "yjs-doc", password)
        b = await open_doc(new_context, server, "yjs-doc", password)
        await edits_meet(a, b)
        counters = server.app.ywebrtc.counters  # type: ignore[attr-defined]
        assert counters.publishes > 0 and dict(counters.topics) == {"yjs-doc": 3}
        await leave(a, b)
        published = [json.loads(await observer.recv()) for _ in range(counters.publishes)]
    # y-webrtc's announce and its WebRTC offers and answers; with a password, each one encrypted (base64).
    payloads = [message["data"] for message in published]
    if password is None:
        assert {p["type"] for p in payloads} >= {"announce", "signal"}
    else:
        assert all(isinstance(p, str) and "offer" not in p for p in payloads)


async def test_a_private_document_with_room_tokens(
    new_context: ContextFactory, start_signaling: ServerFactory, web_root: Path
) -> None:
    """The token rides on the signaling URL; one for another team's documents gets nobody to sync with."""
    secret = "t" * 32
    server = await start_signaling(web_root=web_root, auth_secret=secret)
    tokens, now = RoomTokens(secret), time.time()
    team_a, team_b = (f"?token={tokens.issue(room, 600, now)}" for room in ("team-a/*", "team-b/*"))
    a = await open_doc(new_context, server, "team-a/plans", None, team_a)
    b = await open_doc(new_context, server, "team-a/plans", None, team_a)
    await edits_meet(a, b)
    intruder = await open_doc(new_context, server, "team-a/plans", None, team_b)
    counters = server.app.ywebrtc.counters  # type: ignore[attr-defined]
    await wait_until(lambda: counters.errors["unauthorized"] > 0, timeout=10)
    assert dict(counters.topics) == {"team-a/plans": 2}
    assert await intruder.evaluate("window.text.toString()") == ""
    await leave(a, b, intruder)


async def test_two_browsers_on_two_nodes(
    new_context: ContextFactory, start_signaling: ServerFactory, web_root: Path, redis_settings: dict[str, str]
) -> None:
    one = await start_signaling(web_root=web_root, **redis_settings)
    two = await start_signaling(web_root=web_root, **redis_settings)
    a = await open_doc(new_context, one, "yjs-doc", "secret")
    b = await open_doc(new_context, two, "yjs-doc", "secret")
    await edits_meet(a, b)
    for node in (one, two):
        counters = node.app.ywebrtc.counters  # type: ignore[attr-defined]
        assert counters.publishes > 0 and dict(counters.topics) == {"yjs-doc": 1}
    await leave(a, b)


async def test_the_readme_example_syncs_two_browsers(
    new_context: ContextFactory, start_signaling: ServerFactory, web_root: Path
) -> None:
    """The README's "Yjs apps (y-webrtc)" example, as written but for its URL, in two contexts."""
    (block,) = [b for b in readme_blocks() if b.mode == "ywebrtc-js"]
    code = block.code
    for old, new in README_IMPORTS:
        assert old in code, f"the README's y-webrtc example no longer has {old!r}"
        code = code.replace(old, new)
    server = await start_signaling(web_root=web_root)
    code = code.replace(README_URL, server_url(server, "/y-webrtc", ws=True))
    code += "window.doc = doc; window.provider = provider; window.text = doc.getText('text');"
    pages = []
    for _ in range(2):
        page = await (await new_context()).new_page()
        await page.goto(server_url(server, "/index.html"))
        await page.add_script_tag(content=code)
        pages.append(page)
    await edits_meet(*pages)
    await leave(*pages)

"""PeerJS apps on this server, end to end: the real ``peerjs`` client (npm, installed by scripts/install-peerjs.sh
and served from the test's web root, never a CDN) in two Chromium pages, used as its documentation shows:
``new Peer``, ``peer.call`` with the fake camera and ``answer``, ``peer.connect`` and ``send``. Both calls decode
frames; data goes both ways; on one node, on two nodes of a cluster, and across a server-side drop of a page's
WebSocket (the page reconnects with the same id)."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.async_api import Page

from signaling.ws.aio.server import WebSocketServer
from tests.e2e.demo_helpers import ContextFactory
from tests.helpers.cluster import cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import BrowserErrors

pytestmark = pytest.mark.timeout(90)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "tests" / "e2e" / "pages" / "peerjs.html"
CLIENT = REPO / "tests" / "interop" / "peerjs" / "node_modules" / "peerjs" / "dist" / "peerjs.min.js"
TIMEOUT_MS = 30_000


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    """The page and the peerjs client's dist file, served by the server under test (same origin)."""
    if not CLIENT.is_file():
        pytest.fail(f"{CLIENT} is missing: run `make test-deps` (scripts/install-peerjs.sh)", pytrace=False)
    shutil.copy(PAGE, tmp_path / "peerjs.html")
    shutil.copy(CLIENT, tmp_path / "peerjs.min.js")
    return tmp_path


async def open_page(new_context: ContextFactory, base: str) -> Page:
    context = await new_context()
    page = await context.new_page()
    await page.goto(f"{base}/peerjs.html")
    await page.wait_for_function("window.pj !== undefined && typeof Peer === 'function'")
    return page


async def start(page: Page, peer_id: str | None) -> str:
    got = await page.evaluate("(id) => pj.start(id)", peer_id)
    assert isinstance(got, str)
    return got


async def call_and_chat(a: Page, b: Page, b_id: str) -> None:
    """a calls b (b answers with its camera), then a connects a data channel to b: frames and data both ways."""
    a_id = await a.evaluate("pj.peer.id")
    await a.evaluate("(other) => pj.callPeer(other)", b_id)
    for page in (a, b):
        await page.wait_for_function("pj.video()[0] > 0 && pj.video()[1] > 0", timeout=TIMEOUT_MS)
        await page.wait_for_function("pj.framesDecoded().then((n) => n > 10)", polling=200, timeout=TIMEOUT_MS)
        width, height = await page.evaluate("pj.video()")
        assert (width, height) == (640, 480)  # Chromium's fake camera, decoded
    await a.evaluate("(other) => pj.connectTo(other)", b_id)
    for page, other in ((a, b_id), (b, a_id)):
        await page.wait_for_function("(msg) => pj.received.includes(msg)", arg=f"hello from {other}")
    for page in (a, b):
        assert await page.evaluate("pj.errors") == []


async def test_two_pages_call_and_chat(
    start_signaling: ServerFactory, new_context: ContextFactory, web_root: Path
) -> None:
    server = await start_signaling(web_root=web_root)
    base = f"http://127.0.0.1:{server.port}"
    a, b = await open_page(new_context, base), await open_page(new_context, base)
    assert await start(a, "alice") == "alice"
    b_id = await start(b, None)  # an id from GET /peerjs/peerjs/id
    assert len(b_id) == 36 and b_id.count("-") == 4
    await call_and_chat(a, b, b_id)


async def test_two_pages_on_two_nodes_call_and_chat(
    redis_settings: dict[str, str], new_context: ContextFactory, web_root: Path
) -> None:
    async with cluster(2, redis_settings, "--web-root", str(web_root)) as (one, two):
        a, b = (
            await open_page(new_context, f"http://127.0.0.1:{one.port}"),
            await open_page(new_context, f"http://127.0.0.1:{two.port}"),
        )
        await start(a, "alice")
        b_id = await start(b, "bob")
        await call_and_chat(a, b, b_id)
        for page in (a, b):  # before the nodes stop, or the pages would try to reconnect to them
            await page.context.close()


@pytest.mark.allow_console_errors()
async def test_a_page_whose_socket_is_dropped_reconnects_with_the_same_id(
    start_signaling: ServerFactory, new_context: ContextFactory, web_root: Path, browser_errors: BrowserErrors
) -> None:
    server = await start_signaling(web_root=web_root)
    base = f"http://127.0.0.1:{server.port}"
    a, b = await open_page(new_context, base), await open_page(new_context, base)
    await start(a, "alice")
    await start(b, "bob")
    (socket,) = [s for s in server.app.peerjs.sockets if s.session.peer_id == "alice"]  # type: ignore[attr-defined]
    socket.ws.transport.abort()  # the server drops it: no close handshake
    await a.wait_for_function("pj.drops === 1 && pj.opens === 2", timeout=TIMEOUT_MS)
    assert await a.evaluate("pj.peer.id") == "alice"
    await b.evaluate("(other) => pj.connectTo(other)", "alice")  # the id reaches the new socket
    await a.wait_for_function("(msg) => pj.received.includes(msg)", arg="hello from bob")
    await b.wait_for_function("(msg) => pj.received.includes(msg)", arg="hello from alice")
    assert await a.evaluate("pj.errors") == ["network: Lost connection to server."]

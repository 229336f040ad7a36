"""Chromium's own WebSocket against our server, over ws:// and wss://.

The page (tests/e2e/pages/ws.html and ws-probe.js) is served by the server under test itself, so the browser
also goes through our static files and HTTP routing, then opens ``/ws`` on the same origin. For wss:// the server
uses a throwaway self-signed certificate, which the browser context accepts (``ignore_https_errors``).
Each test runs once per scheme.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from signaling.ws.aio.server import WebSocketServer
from tests.helpers.wait import wait_until

PAGES = Path(__file__).resolve().parent / "pages"
MAX_MESSAGE_SIZE = 65536  # the server's default, which these tests rely on
PING_OVERHEAD = len('{"type":"ping","pad":""}')


def padded_ping(size: int) -> str:
    """A ping of exactly ``size`` bytes (ASCII): ``{"type":"ping","pad":"xxx..."}``; unknown fields are ignored."""
    text = json.dumps({"type": "ping", "pad": "x" * (size - PING_OVERHEAD)}, separators=(",", ":"))
    assert len(text.encode()) == size
    return text


class Probe:
    """Drives ``window.wsProbe`` (ws-probe.js) in the page; sockets are small integer ids."""

    def __init__(self, page: Any) -> None:
        self.page = page

    async def open(self, path: str = "/ws") -> int:
        return int(await self.page.evaluate("path => wsProbe.open(path)", path))

    async def send(self, sid: int, text: str) -> int:
        return int(await self.page.evaluate("([sid, text]) => wsProbe.send(sid, text)", [sid, text]))

    async def send_binary(self, sid: int, length: int) -> None:
        await self.page.evaluate("([sid, n]) => wsProbe.sendBinary(sid, n)", [sid, length])

    async def next(self, sid: int, within: float = 5.0) -> Any:
        return await self.page.evaluate("([sid, ms]) => wsProbe.next(sid, ms)", [sid, within * 1000])

    async def next_json(self, sid: int, within: float = 5.0) -> dict[str, Any]:
        message = await self.next(sid, within)
        assert isinstance(message, str), f"expected a text message, got {message!r}"
        value = json.loads(message)
        assert isinstance(value, dict)
        return value

    async def close(self, sid: int, code: int | None = None, reason: str = "") -> None:
        await self.page.evaluate(
            "([sid, code, reason]) => wsProbe.close(sid, code ?? undefined, reason)", [sid, code, reason]
        )

    async def closed(self, sid: int, within: float = 5.0) -> dict[str, Any]:
        """The close event: ``{"code", "reason", "wasClean"}``."""
        details = await self.page.evaluate("([sid, ms]) => wsProbe.closed(sid, ms)", [sid, within * 1000])
        assert isinstance(details, dict)
        return details

    async def state(self, sid: int) -> dict[str, Any]:
        state = await self.page.evaluate("sid => wsProbe.state(sid)", sid)
        assert isinstance(state, dict)
        return state

    async def pending(self, sid: int) -> list[Any]:
        return list(await self.page.evaluate("sid => wsProbe.pending(sid)", sid))


@dataclass
class Setup:
    server: WebSocketServer
    probe: Probe
    url: str  # the page's URL


SetupFactory = Callable[..., Awaitable[Setup]]


@pytest.fixture(params=["ws", "wss"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve_probe_page(
    request: pytest.FixtureRequest,
    scheme: str,
    start_signaling: Callable[..., Awaitable[WebSocketServer]],
    server_url: Callable[..., str],
    page: Any,
) -> SetupFactory:
    """``await serve_probe_page(**Settings)``: our server (TLS for wss) serving tests/e2e/pages, the page loaded."""

    async def setup(**settings: Any) -> Setup:
        if scheme == "wss":
            cert = request.getfixturevalue("tls_cert")
            settings.update(certfile=cert.certfile, keyfile=cert.keyfile)
        server = await start_signaling(web_root=PAGES, **settings)
        url = server_url(server, "/ws.html")
        response = await page.goto(url)
        assert response is not None and response.ok, f"GET {url}: {response and response.status}"
        await page.wait_for_function("() => window.wsProbe !== undefined")
        probe = Probe(page)
        assert await page.evaluate("() => wsProbe.url()") == server_url(server, "/ws", ws=True)
        return Setup(server, probe, url)

    return setup


async def test_ping_and_message_sizes_below_the_limit(serve_probe_page: SetupFactory) -> None:
    s = await serve_probe_page()
    p = s.probe
    sid = await p.open()

    assert await p.send(sid, '{"type":"ping"}') == 15
    assert await p.next_json(sid) == {"type": "pong"}

    # 10 bytes: a JSON object without a string type. The server answers with an error and keeps the socket open.
    assert await p.send(sid, '{"type":0}') == 10
    error = await p.next_json(sid)
    assert error["type"] == "error" and error["code"] == "invalid-message", error

    for size in (3 * 1024, 16 * 1024, MAX_MESSAGE_SIZE):  # a few KiB, a 16-bit length, exactly the limit
        assert await p.send(sid, padded_ping(size)) == size
        assert await p.next_json(sid) == {"type": "pong"}, f"no pong for {size} bytes"

    state = await p.state(sid)
    assert state["readyState"] == 1 and state["errors"] == 0 and state["closed"] is None, state


async def test_100_kib_message_is_closed_with_1009(serve_probe_page: SetupFactory) -> None:
    s = await serve_probe_page()
    p = s.probe
    sid = await p.open()
    await p.send(sid, padded_ping(1024))
    assert await p.next_json(sid) == {"type": "pong"}

    await p.send(sid, padded_ping(100 * 1024))
    closed = await p.closed(sid)
    assert closed["code"] == 1009, closed
    assert closed["wasClean"] is True, closed
    assert closed["reason"] == f"message of {100 * 1024} bytes over the {MAX_MESSAGE_SIZE}-byte limit", closed
    assert await p.pending(sid) == []  # no pong for the big one
    assert (await p.state(sid))["errors"] == 0

    # The server is unharmed: a new socket from the same page works.
    again = await p.open()
    await p.send(again, '{"type":"ping"}')
    assert await p.next_json(again) == {"type": "pong"}


async def test_binary_message_is_closed_with_1003(serve_probe_page: SetupFactory) -> None:
    s = await serve_probe_page()
    p = s.probe
    sid = await p.open()
    await p.send_binary(sid, 16)
    closed = await p.closed(sid)
    assert closed == {
        "code": 1003,
        "reason": "binary messages are not supported; send JSON text",
        "wasClean": True,
    }


async def test_no_join_within_the_join_timeout_is_closed_with_1008(serve_probe_page: SetupFactory) -> None:
    s = await serve_probe_page(join_timeout=0.5)
    p = s.probe
    sid = await p.open()
    # Pings do not count as joining.
    await p.send(sid, '{"type":"ping"}')
    assert await p.next_json(sid) == {"type": "pong"}
    closed = await p.closed(sid, within=5)
    assert closed == {"code": 1008, "reason": "no join within the join timeout", "wasClean": True}


async def test_page_closes_with_its_own_code(serve_probe_page: SetupFactory) -> None:
    s = await serve_probe_page()
    p = s.probe
    sid = await p.open()
    await p.send(sid, '{"type":"ping"}')
    assert await p.next_json(sid) == {"type": "pong"}
    assert len(s.server.connections) == 1

    await p.close(sid, 4000, "bye")
    closed = await p.closed(sid)
    # The server echoes the code (RFC 6455 5.5.1); its close frame carries no reason.
    assert closed == {"code": 4000, "reason": "", "wasClean": True}
    # And the server let go of the connection (its connection table announces nothing: poll it).
    await wait_until(
        lambda: not s.server.connections,
        timeout=2,
        interval=0.02,
        message=lambda: f"the server still holds {len(s.server.connections)} connection(s)",
    )


async def test_server_shutdown_closes_with_1001(serve_probe_page: SetupFactory) -> None:
    s = await serve_probe_page()
    p = s.probe
    sids = [await p.open() for _ in range(3)]
    await p.send(sids[0], '{"type":"join","room":"shutdown-test","name":"a"}')
    welcome = await p.next_json(sids[0])
    assert welcome["type"] == "welcome", welcome

    await asyncio.wait_for(s.server.close(), 10)
    for sid in sids:
        closed = await p.closed(sid)
        assert closed == {"code": 1001, "reason": "server shutting down", "wasClean": True}
    assert not s.server.connections

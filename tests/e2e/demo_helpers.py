"""Helpers for driving the demo call page (web/) in end-to-end tests.

A :class:`CallPage` wraps one Playwright page that has opened ``/?room=R&name=N`` and talks to it only through
the stable hooks documented at the top of web/app.js: ``#status[data-state]``, ``#tiles .tile[data-peer]``
(``data-state``, ``data-channel``), ``#media-error[data-reason]``, ``#chat-log li.chat-msg`` and ``window.app``.
Every wait is bounded; a wait that times out fails with an AssertionError that quotes the page's
``app.snapshot()`` and the tail of its own log, so a failure says what the page saw.

Remote video is judged the way a user would see it and the way WebRTC reports it: for every remote peer, the
inbound video's ``framesDecoded`` (``getStats()``) must rise between two reads, and the tile's ``<video>`` must
have a ``videoWidth`` above 0. (With three or more peers Chromium may scale the sent video below 640 px, so
only "> 0" is asserted.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from playwright.async_api import BrowserContext, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS_DIR = REPO_ROOT / "test-artifacts" / "e2e" / "screenshots"

# Chromium's own console error while the server is down and the client retries (net::ERR_CONNECTION_REFUSED).
WS_CONNECT_FAILED = r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws' failed"

CONNECT_TIMEOUT_S = 15.0  # two (or three) pages on loopback connect in well under 2 s; CI machines are slower
VIDEO_TIMEOUT_S = 15.0

ContextFactory = Callable[..., Awaitable[BrowserContext]]


def unique_room(prefix: str) -> str:
    """A room name no other test uses (the server may be shared by a whole session in the future)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def call_url(port: int, room: str, name: str, **params: str) -> str:
    query = urlencode({"room": room, "name": name, **params})
    return f"http://127.0.0.1:{port}/?{query}"


def log_events(text: str, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of a `signaling` process whose ``event`` is ``event`` (other lines are skipped)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            found.append(record)
    return found


# ----------------------------------------------------------------------------------------- in-page scripts

# Per remote peer: connection state, the inbound video's framesDecoded (two reads that must differ), and the
# tile's <video> size. Polls until every one of exactly `peers` remote peers plays, or the deadline passes;
# returns the last readings either way so that a failure can show them.
_VIDEO_CHECK_JS = """
async ({peers, timeoutMs}) => {
  const deadline = performance.now() + timeoutMs;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const framesDecoded = async (pc) => {
    let n = null;
    try {
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') n = (n ?? 0) + (s.framesDecoded ?? 0);
      });
    } catch (e) { /* closed meanwhile */ }
    return n;
  };
  const first = {};
  for (;;) {
    const readings = {};
    const ids = [...window.app.links.keys()];
    let ok = ids.length === peers;
    for (const id of ids) {
      const link = window.app.links.get(id);
      const tile = document.querySelector(`#tiles .tile[data-peer="${CSS.escape(id)}"]`);
      const video = tile ? tile.querySelector('video') : null;
      const frames = await framesDecoded(link.pc);
      if (first[id] === undefined && frames > 0) first[id] = frames;
      const r = {
        name: link.name,
        state: link.state,
        framesFirst: first[id] ?? null,
        framesLast: frames,
        videoWidth: video ? video.videoWidth : null,
        videoHeight: video ? video.videoHeight : null,
        paused: video ? video.paused : null,
        readyState: video ? video.readyState : null,
      };
      r.playing = r.state === 'connected' && r.framesFirst !== null && frames > r.framesFirst && r.videoWidth > 0;
      readings[id] = r;
      ok = ok && r.playing;
    }
    if (ok || performance.now() > deadline) return { ok, peers: readings };
    await sleep(250);
  }
}
"""

_STATUS_IS_JS = "s => document.querySelector('#status')?.dataset.state === s"
_TILE_GONE_JS = 'id => !document.querySelector(`#tiles .tile[data-peer="${CSS.escape(id)}"]`)'
_TILES_CONNECTED_JS = """
({peers, channel}) => {
  const tiles = [...document.querySelectorAll('#tiles .tile[data-peer]')];
  return tiles.length === peers && tiles.every(
    (t) => t.dataset.state === 'connected' && (!channel || t.dataset.channel === 'open'));
}
"""

_DEBUG_JS = """
() => {
  if (!window.app) return { error: 'window.app is missing', url: location.href };
  const s = window.app.snapshot();
  return {
    url: location.href,
    status: document.querySelector('#status')?.dataset.state,
    tiles: [...document.querySelectorAll('#tiles .tile[data-peer]')].map((t) => ({
      peer: t.dataset.peer, state: t.dataset.state, channel: t.dataset.channel, video: t.dataset.video })),
    selfId: s.selfId, signaling: s.signaling, media: s.media, welcomes: s.welcomes, peers: s.peers,
    chat: s.chat.map((m) => [m.direction, m.via, m.text]),
    log: window.app.log.slice(-40).map((l) => `${l.t} ${l.level} ${l.msg}`),
  };
}
"""


# --------------------------------------------------------------------------------------------- the page


@dataclass
class CallPage:
    """One browser tab on the demo page, in its own context (a separate "user")."""

    page: Page
    label: str

    @property
    def context(self) -> BrowserContext:
        return self.page.context

    async def debug(self) -> str:
        """What the page knows, for failure messages (never raises)."""
        try:
            state = await self.page.evaluate(_DEBUG_JS)
        except PlaywrightError as exc:
            return f"[{self.label}] (could not read the page: {exc})"
        return f"[{self.label}] " + json.dumps(state, indent=1, default=str)

    async def _wait_js(self, what: str, expression: str, arg: Any, timeout_s: float) -> None:
        try:
            await self.page.wait_for_function(expression, arg=arg, timeout=timeout_s * 1000, polling=100)
        except PlaywrightTimeoutError:
            raise AssertionError(f"{self.label}: {what} not within {timeout_s:.0f} s\n{await self.debug()}") from None

    # -- state --

    async def self_id(self) -> str:
        value = await self.page.evaluate("() => window.app.state.selfId")
        assert isinstance(value, str) and value, f"{self.label}: no peer id yet"
        return value

    async def status(self) -> str:
        return str(await self.page.locator("#status").get_attribute("data-state"))

    async def tile_peers(self) -> list[str]:
        """Peer ids of the remote tiles, in page order."""
        ids = await self.page.eval_on_selector_all("#tiles .tile[data-peer]", "ts => ts.map(t => t.dataset.peer)")
        return [str(i) for i in ids]

    # -- waits --

    async def wait_status(self, state: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        await self._wait_js(f"#status[data-state={state}]", _STATUS_IS_JS, state, timeout_s)

    async def wait_connected(self, peers: int, *, channel: bool = True, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Exactly ``peers`` remote tiles, every one ``data-state=connected`` (and its chat channel open)."""
        what = f"{peers} remote tile(s) connected" + (" with an open data channel" if channel else "")
        await self._wait_js(what, _TILES_CONNECTED_JS, {"peers": peers, "channel": channel}, timeout_s)

    async def wait_tile_gone(self, peer: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        await self._wait_js(f"the tile of {peer} removed", _TILE_GONE_JS, peer, timeout_s)

    async def wait_video(self, peers: int, timeout_s: float = VIDEO_TIMEOUT_S) -> dict[str, Any]:
        """Every one of ``peers`` remote videos plays: framesDecoded rising and videoWidth > 0. Returns readings."""
        result = await self.page.evaluate(_VIDEO_CHECK_JS, {"peers": peers, "timeoutMs": timeout_s * 1000})
        assert isinstance(result, dict)
        if not result["ok"]:
            raise AssertionError(
                f"{self.label}: remote video of {peers} peer(s) not playing within {timeout_s:.0f} s: "
                f"{json.dumps(result['peers'], indent=1)}\n{await self.debug()}"
            )
        readings = result["peers"]
        assert isinstance(readings, dict)
        return readings

    async def wait_chat(self, direction: str, text: str, timeout_s: float = 10.0) -> dict[str, str | None]:
        """The ``#chat-log li.chat-msg`` entry with this direction and text; returns its data-* attributes."""
        item = self.page.locator(
            f"#chat-log li.chat-msg[data-direction={json.dumps(direction)}][data-text={json.dumps(text)}]"
        )
        try:
            await item.first.wait_for(state="attached", timeout=timeout_s * 1000)
        except PlaywrightTimeoutError:
            raise AssertionError(
                f"{self.label}: no {direction} chat entry {text!r} within {timeout_s:.0f} s\n{await self.debug()}"
            ) from None
        attrs = await item.first.evaluate("li => ({...li.dataset})")
        assert isinstance(attrs, dict)
        return attrs


async def open_call(
    new_context: ContextFactory,
    port: int,
    room: str,
    name: str,
    *,
    viewport: Mapping[str, int] | None = None,
    params: Mapping[str, str] | None = None,
    context: BrowserContext | None = None,
) -> CallPage:
    """A new context (unless ``context`` is given) with one page that opens the call page for ``room``."""
    ctx = context or await new_context(viewport=dict(viewport or {"width": 1280, "height": 800}))
    page = await ctx.new_page()
    url = call_url(port, room, name, **(params or {}))
    response = await page.goto(url)
    assert response is not None and response.ok, f"GET {url}: {response and response.status}"
    await page.wait_for_function("() => window.app !== undefined")
    return CallPage(page, name)

"""Calls through a real TURN relay: Debian's coturn on loopback, with the credentials the server puts in welcome.

coturn runs with ``use-auth-secret`` (the TURN REST scheme), the secret the signaling server signs with, and
``--allow-loopback-peers`` (every test address is 127.0.0.1). The peers are told to use relay candidates only, so
a call that connects has gone through coturn, and one with credentials coturn refuses cannot connect at all: the
tests check that it says so instead of hanging.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from signaling.ws.aio.server import WebSocketServer
from tests.e2e.demo_helpers import ContextFactory, open_call, unique_room
from tests.e2e.peer_helpers import (
    WAIT,
    Event,
    events,
    of,
    running_peer,
    running_peers,
    self_id,
    wait_event,
    wait_for,
)
from tests.helpers.server_process import ServerProcess, async_running_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
SECRET = "coturn-shared-secret-for-the-tests"
#: Relay ports below Linux's ephemeral range, so that no client socket of the tests takes one.
RELAY_PORTS = ("--min-port=20000", "--max-port=20200")


@contextlib.asynccontextmanager
async def coturn(tmp_path: Path, secret: str = SECRET) -> AsyncIterator[ServerProcess]:
    argv = [
        "turnserver",
        "-n",  # no /etc/turnserver.conf
        "--listening-ip=127.0.0.1",
        "--listening-port={port}",
        "--relay-ip=127.0.0.1",
        *RELAY_PORTS,
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm=signaling.test",
        "--no-tls",
        "--no-dtls",
        "--allow-loopback-peers",
        "--no-cli",
        "--fingerprint",
        "--log-file=stdout",
        "--simple-log",
        f"--pidfile={tmp_path / 'turn.pid'}",
        f"--userdb={tmp_path / 'turndb'}",
        "-v",
    ]
    async with async_running_process(argv, name="coturn", ok_returncodes=(0, -15, 15)) as proc:
        yield proc


def turn_settings(turn: ServerProcess, secret: str = SECRET) -> dict[str, object]:
    return {"turn_secret": secret, "turn_urls": f"turn:127.0.0.1:{turn.port}?transport=udp"}


def allocations(turn: ServerProcess) -> int:
    return len(re.findall(r"ALLOCATE processed, success", turn.log_text()))


def connected_to(remote: str) -> Callable[[list[Event]], list[Event]]:
    return lambda evs: of(evs, "peer_state", peer=remote, state="connected")


def frames_from(remote: str) -> Callable[[list[Event]], list[Event]]:
    return lambda evs: [e for e in of(evs, "frames_received", peer=remote) if e.get("count", 0) >= 20]


async def test_two_relay_only_peers_call_through_coturn(start_signaling: ServerFactory, tmp_path: Path) -> None:
    async with coturn(tmp_path) as turn:
        server = await start_signaling(**turn_settings(turn))
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with running_peers(url, "relayed", "ab", "--relay-only", "--fps", "10") as (a, b):
            ida, idb = await self_id(a), await self_id(b)
            await wait_for(a, connected_to(idb), "a connected to b through the relay", seconds=WAIT * 2)
            await wait_for(b, connected_to(ida), "b connected to a through the relay", seconds=WAIT * 2)
            await wait_for(a, frames_from(idb), "a decodes b's video")
            await wait_for(b, frames_from(ida), "b decodes a's video")
        assert allocations(turn) >= 2, turn.log_text()[-3000:]


async def test_chromium_relay_only_calls_an_aiortc_peer_through_coturn(
    start_signaling: ServerFactory, new_context: ContextFactory, tmp_path: Path
) -> None:
    async with coturn(tmp_path) as turn:
        server = await start_signaling(**turn_settings(turn))
        room = unique_room("turn")
        async with running_peer(f"ws://127.0.0.1:{server.port}/ws", room, "aiortc", "--fps", "10") as peer:
            call = await open_call(new_context, server.port, room, "Browser", params={"ice": "relay"})
            await call.wait_connected(1, channel=False)
            await call.wait_video(1)
            peer_id = await self_id(peer)
            path = await call.page.evaluate(
                "async (id) => { for (let i = 0; i < 50; i++) { const s = window.app.peers[id]?.stats;"
                " if (s?.localType) return s; await new Promise(r => setTimeout(r, 200)); } return null; }",
                peer_id,
            )
            assert path is not None and path["localType"] == "relay", path
            servers = await call.page.evaluate("() => window.app.snapshot().iceServers")
            turn_entries = [s for s in servers if "username" in s and str(s["urls"][0]).startswith("turn:")]
            assert turn_entries, servers
        assert allocations(turn) >= 1


async def test_credentials_coturn_refuses_are_reported_not_a_hang(
    start_signaling: ServerFactory, tmp_path: Path
) -> None:
    """A server configured with another secret than coturn's: the peer says it gathered nothing, at once."""
    async with coturn(tmp_path) as turn:
        server = await start_signaling(**turn_settings(turn, secret="not-the-coturn-secret"))
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with running_peers(url, "refused", "ab", "--relay-only") as (a, _b):
            event = await wait_event(a, "no_local_candidates", seconds=WAIT)
            assert event["relay_only"] is True and event["level"] == "error"
            assert not of(events(a), "peer_state", state="connected")
        assert "401" in turn.log_text() or "wrong" in turn.log_text().lower(), turn.log_text()[-2000:]


async def test_the_page_applies_fresh_turn_credentials_to_its_connections(
    start_signaling: ServerFactory, new_context: ContextFactory
) -> None:
    """TURN credentials that expire are replaced in every RTCPeerConnection (setConfiguration), so a long call
    can still restart ICE: the browser side of the ice-servers message."""
    server = await start_signaling(turn_secret=SECRET, turn_urls="turn:127.0.0.1:3478?transport=udp", turn_ttl=2)
    room = unique_room("refresh")
    alice = await open_call(new_context, server.port, room, "Alice")
    bob = await open_call(new_context, server.port, room, "Bob")
    await alice.wait_connected(1, channel=False)
    first = await alice.page.evaluate("() => window.app.snapshot().iceServers[0].username")
    usernames = await alice.page.evaluate(
        """async (first) => {
            for (let i = 0; i < 100; i++) {
                const now = window.app.snapshot().iceServers[0].username;
                if (now !== first) {
                    const link = [...window.app.links.values()][0];
                    return [now, link.pc.getConfiguration().iceServers[0].username];
                }
                await new Promise((r) => setTimeout(r, 100));
            }
            return null;
        }""",
        first,
    )
    assert usernames is not None, "no ice-servers update within 10 s"
    fresh, applied = usernames
    assert fresh != first and applied == fresh
    assert await bob.status() == "joined"

"""Calls across a signaling drop and across server nodes, end to end: real Chromium pages and `signaling peer`
(aiortc) processes, on loopback only.

A forced drop goes through tests/helpers/tcp_proxy.py: the client reaches the server through a relay that the
test resets, as a network blip would. The session resumes (same peer id, nothing lost), so the call itself never
notices: its peer connection is the same object, and decoded frames keep rising. The cluster tests put each
peer on its own `signaling serve` process, sharing rooms through the test's redis-server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from signaling.ws.aio.server import WebSocketServer
from tests.e2e.demo_helpers import ContextFactory, open_call, unique_room
from tests.e2e.peer_helpers import Event, events, of, running_peer, self_id, wait_event, wait_for
from tests.e2e.test_aiortc_peers import connected_to, frames_from
from tests.helpers.cluster import cluster, ws
from tests.helpers.server_process import async_running_server
from tests.helpers.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from tests.e2e.conftest import BrowserErrors

ServerFactory = Callable[..., Awaitable[WebSocketServer]]


def frames(evs: list[Event], remote: str) -> int:
    got = of(evs, "frames_received", peer=remote)
    return int(got[-1]["count"]) if got else 0


async def test_an_aiortc_call_survives_a_signaling_drop() -> None:
    async with async_running_server() as srv:
        proxy = await TcpProxy(srv.port).start()
        try:
            async with (
                running_peer(f"ws://127.0.0.1:{proxy.port}/ws", "blip", "a") as a,
                running_peer(f"{srv.url}/ws", "blip", "b") as b,
            ):
                a_id, b_id = await self_id(a), await self_id(b)
                await wait_for(a, connected_to(b_id), f"connected to {b_id}")
                before = (await wait_for(a, frames_from(b_id, 15), "frames before the drop"))[-1]["count"]
                assert proxy.reset() == 1  # a's signaling connection, and only it
                resumed = await wait_event(a, "session_resumed")
                assert resumed["self_id"] == a_id and resumed["links"] == 1
                await wait_for(a, frames_from(b_id, before + 30), "frames rising after the drop")
                await wait_for(b, frames_from(a_id, frames(events(b), a_id) + 15), "frames rising at the other end")
                for proc in (a, b):
                    assert of(events(proc), "peer_left") == []  # nobody saw anybody leave
                assert len(of(events(b), "peer_state", peer=a_id, state="connected")) == 1  # one connection
        finally:
            await proxy.close()


async def test_a_browser_call_survives_a_signaling_drop(
    start_signaling: ServerFactory, new_context: ContextFactory, browser_errors: BrowserErrors
) -> None:
    server = await start_signaling()
    proxy = await TcpProxy(server.port).start()
    try:
        room = unique_room("blip")
        alice = await open_call(new_context, proxy.port, room, "Alice")
        bob = await open_call(new_context, server.port, room, "Bob")
        await alice.wait_connected(1)
        await bob.wait_connected(1)
        await alice.wait_video(1)
        await bob.wait_video(1)
        alice_id, bob_id = await alice.self_id(), await bob.self_id()
        await alice.page.evaluate(
            """(bob) => {
                window.__pc = window.app.links.get(bob).pc;
                window.__states = [];
                window.app.client.addEventListener('state', (e) => window.__states.push(e.detail.state));
            }""",
            bob_id,
        )
        proxy.reset()
        await alice.page.wait_for_function("() => window.app.state.welcomes === 2", timeout=15_000)
        states = await alice.page.evaluate("() => window.__states")
        assert "reconnecting" in states and states[-1] == "joined", states  # the pill said so meanwhile
        assert await alice.self_id() == alice_id  # resumed: the same peer
        assert await alice.page.evaluate("(bob) => window.app.links.get(bob).pc === window.__pc", bob_id)
        assert any("(resumed)" in str(line) for line in await alice.page.evaluate("() => window.app.log"))
        # The media never stopped: both videos still play, on the same peer connection.
        await alice.wait_video(1)
        await bob.wait_video(1)
        assert await bob.tile_peers() == [alice_id]
        assert not any("peer-left" in str(line) for line in await bob.page.evaluate("() => window.app.log"))
    finally:
        await proxy.close()


async def test_aiortc_peers_on_two_nodes_call_each_other(redis_settings: dict[str, str]) -> None:
    async with (
        cluster(2, redis_settings) as nodes,
        running_peer(ws(nodes[0]), "nodes", "a") as a,
        running_peer(ws(nodes[1]), "nodes", "b") as b,
    ):
        a_id, b_id = await self_id(a), await self_id(b)
        await wait_for(a, connected_to(b_id), f"connected to {b_id} on the other node")
        await wait_for(b, connected_to(a_id), f"connected to {a_id} on the other node")
        await wait_for(a, frames_from(b_id, 30), "frames from the other node's peer")
        await wait_for(b, frames_from(a_id, 30), "frames from the other node's peer")


async def test_browser_pages_on_two_nodes_call_each_other(
    redis_settings: dict[str, str], new_context: ContextFactory
) -> None:
    async with cluster(2, redis_settings) as nodes:
        room = unique_room("nodes")
        alice = await open_call(new_context, nodes[0].port, room, "Alice")
        bob = await open_call(new_context, nodes[1].port, room, "Bob")
        await alice.wait_connected(1)
        await bob.wait_connected(1)
        await alice.wait_video(1)
        await bob.wait_video(1)
        assert await alice.tile_peers() == [await bob.self_id()]
        for page in (alice, bob):  # leave while the nodes are up, so the pages do not retry after they stop
            await page.context.close()

"""Webhooks from several `signaling serve` processes on one redis-server: each event sent once for the whole
cluster, gap-free and in order per room, whichever node changed the room; a node killed (SIGKILL) gives one
``peer.left`` (``node-lost``) per peer, sent by a node still alive, even when the dead one was the sender."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter

import pytest

from signaling.app.webhooks import new_secret
from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.models import PeerJoined, PeerLeft
from tests.app.test_cluster import http_get
from tests.app.test_webhooks import in_order_per_room
from tests.helpers.cluster import NODE_TTL, cluster, ws
from tests.helpers.webhook_receiver import receiving

pytestmark = pytest.mark.timeout(120)

SECRET = new_secret()
STEP = 10.0


async def test_three_nodes_send_each_event_once_gap_free_per_room(redis_settings: dict[str, str]) -> None:
    async with receiving(SECRET) as receiver:
        hooks = ("--webhook-urls", receiver.url, "--webhook-secret", SECRET)
        async with cluster(3, redis_settings, *hooks) as nodes:
            clients = [await SignalingClient.connect(ws(nodes[n % 3])).__aenter__() for n in range(9)]
            for n, client in enumerate(clients):
                await client.join(f"room-{n % 3}")  # each room has a peer on each node
            for client in clients[:6]:
                await client.leave()
            # Per room: started, 3 joined, 2 left.
            await receiver.until(18, within=STEP)
            for client in clients[6:]:
                await client.leave()
            events = await receiver.until(24, within=STEP)  # a left and the finish more per room
            for client in clients:
                await client.close()
        assert Counter(receiver.accepted_ids).most_common(1)[0][1] == 1  # no event twice
        assert len(events) == 24 and receiver.forged == []
        assert in_order_per_room(receiver) == {f"room-{n}": [1, 2, 3, 4, 5, 6, 7, 8] for n in range(3)}


async def test_a_killed_nodes_peers_each_leave_once_as_node_lost(redis_settings: dict[str, str]) -> None:
    killable = {"ok_returncodes": (0, -signal.SIGTERM, -signal.SIGKILL), "must_stay_up": False}
    async with receiving(SECRET) as receiver:
        hooks = ("--webhook-urls", receiver.url, "--webhook-secret", SECRET, "--resume-grace", "1")
        async with cluster(2, redis_settings, *hooks, **killable) as (doomed, survivor):
            watcher = await SignalingClient.connect(ws(survivor)).__aenter__()
            await watcher.join("r")
            await receiver.until(2, within=STEP)  # room.started, peer.joined: the first node to look sends them
            plain = await SignalingClient.connect(ws(doomed), resume=False).__aenter__()
            resumable = await SignalingClient.connect(ws(doomed), resume=False).__aenter__()
            wp = await plain.join("r")
            wr = await resumable.join("r", resumable=True)
            await receiver.until(4, within=STEP)
            async with asyncio.timeout(STEP):
                assert {(await watcher.expect(PeerJoined)).peer for _ in range(2)} == {wp.peer, wr.peer}
            # Started first, the doomed node took the sender's lease: its death hands the sending over.
            assert json.loads((await http_get(doomed, "/healthz"))[1])["webhooks"]["sending"] is True
            assert json.loads((await http_get(survivor, "/healthz"))[1])["webhooks"]["sending"] is False
            doomed.proc.send_signal(signal.SIGKILL)
            async with asyncio.timeout(NODE_TTL + STEP):
                assert {(await watcher.expect(PeerLeft)).peer for _ in range(2)} == {wp.peer, wr.peer}
            # If the dead node was the sender, the survivor takes over once its lease lapsed (5 s).
            events = await receiver.until(6, within=STEP + 5)
            await watcher.close()
            await receiver.until(8, within=STEP)  # the watcher's leave and the room's end
        lost = [(e["data"]["peer"], e["data"]["reason"]) for e in events[4:]]
        assert sorted(lost) == sorted([(wp.peer, "node-lost"), (wr.peer, "node-lost")])
        assert Counter(receiver.accepted_ids).most_common(1)[0][1] == 1
        assert in_order_per_room(receiver) == {"r": [1, 2, 3, 4, 5, 6, 7, 8]}
        for client in (plain, resumable):
            await client.close()

"""Cluster mode under attack, over real sockets: two `signaling serve` nodes on one real redis-server, at their
default limits, and attackers from one loopback address (as from an office NAT) beside honest bystanders.

Each attack of the red-team run (issue 16) has its test here; bench/bench_cluster_abuse.py measures the same
attacks at scale (many addresses, memory, latency).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from signaling.ws.aio.client import ClientConnection, connect
from tests.helpers.cluster import cluster, ws
from tests.helpers.server_process import ServerProcess

pytestmark = pytest.mark.timeout(90)

STEP = 10.0


async def send(conn: ClientConnection, **message: Any) -> None:
    await conn.send(json.dumps(message))


async def recv(conn: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(STEP):
        message: dict[str, Any] = json.loads(await conn.recv())
    return message


async def joined(node: ServerProcess, room: str, **fields: Any) -> tuple[ClientConnection, dict[str, Any]]:
    conn = await connect(ws(node))
    await send(conn, type="join", room=room, **fields)
    welcome = await recv(conn)
    assert welcome["type"] == "welcome", welcome
    return conn, welcome


async def round_trip(a: ClientConnection, b: ClientConnection, b_peer: str, n: int) -> None:
    await send(a, type="message", to=b_peer, data=n)
    while (message := await recv(b))["type"] != "message":
        pass
    assert message["data"] == n


async def test_a_fan_out_flood_is_paid_by_its_sender_and_bystanders_stay(redis_settings: dict[str, str]) -> None:
    """One connection on node 1 spends its byte burst on 64,000-byte broadcasts to 7 peers on node 2: each costs
    7 copies against its budget, so two pass and the rest are refused (``rate-limited``); the receivers and the
    bystanders in other rooms, on both nodes, stay connected and keep relaying."""
    async with cluster(2, redis_settings) as (one, two):
        bystanders = []
        for n in range(4):
            a, _ = await joined(one, f"calm{n}")
            b, welcome = await joined(two, f"calm{n}")
            await recv(a)  # peer-joined
            bystanders.append((a, b, welcome["peer"]))
        attacker, _ = await joined(one, "target")
        receivers = [(await joined(two, "target"))[0] for _ in range(7)]
        for _ in range(7):
            assert (await recv(attacker))["type"] == "peer-joined"
        data = "x" * 63_900
        for n in range(16):
            await send(attacker, type="message", data=data, id=n)
        refusals = [await recv(attacker) for _ in range(14)]
        assert {(r["type"], r["code"]) for r in refusals} == {("error", "rate-limited")}
        for receiver in receivers:
            got: list[str] = []
            while len(got) < 2:
                message = await recv(receiver)
                if message["type"] == "message":
                    got.append(message["data"])
            assert got == [data, data]
        for n, (a, b, b_peer) in enumerate(bystanders):
            await round_trip(a, b, b_peer, n)
            assert a.close_code is None and b.close_code is None
        for conn in [attacker, *receivers] + [c for a, b, _ in bystanders for c in (a, b)]:
            await conn.close()


async def test_ghosts_from_one_address_are_bounded(redis_settings: dict[str, str]) -> None:
    """Connect, join resumable, send yourself a message, reset the connection: each ghost holds kept messages and
    a room with no socket open. Past the address's budget the oldest end, on whichever node they were left, and
    their rooms get ``peer-left``; the newest still resume."""
    async with cluster(2, redis_settings, "--max-ghosts-per-ip", "3") as nodes:
        watchers = []
        tokens = []
        for n in range(6):
            node = nodes[n % 2]
            watcher, _ = await joined(node, f"ghost{n}")
            ghost, welcome = await joined(nodes[1 - n % 2], f"ghost{n}", resumable=True)
            await send(ghost, type="message", to=welcome["peer"], data="y" * 30_000)
            assert (await recv(ghost))["data"] == "y" * 30_000
            assert (await recv(watcher))["type"] == "peer-joined"
            ghost.abort()  # a TCP reset: a ghost now
            watchers.append((watcher, welcome["peer"]))
            tokens.append(welcome.get("resume"))
        for watcher, peer in watchers[:3]:
            assert await recv(watcher) == {"type": "peer-left", "peer": peer}  # the three oldest ended
        for n in (3, 4, 5):
            conn, welcome = await joined(nodes[n % 2], f"ghost{n}", resume=tokens[n], last_seq=1)
            assert welcome["resumed"] is True
            await conn.close()
        for watcher, _ in watchers:
            await watcher.close()

"""WHIP sessions against the same session made by a WebSocket peer, on one `signaling serve`.

A session here is what a broadcaster costs the server to start and stop, media aside: the WHIP client POSTs an
offer to /whip/{room}, the room's receiving peer answers, the client DELETEs it (two HTTP requests, two TCP
connections, a synthetic peer joining and leaving). The baseline does the same over the protocol: connect,
join, offer, wait for the answer, leave by closing. Each of ``--workers`` clients has a room of its own with a
receiving peer (a SignalingClient that answers every offer at once) and loops for ``--seconds``; the two modes
alternate ``--runs`` times. Reported: sessions per second and the server's CPU per session (its /proc time),
medians with their range, and the ratios WHIP / WebSocket.

Run: python -m bench.bench_whip [--quick] [--workers 8] [--seconds 5] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench import common, procstat
from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.models import RelayedOffer
from signaling.ws.aio.client import connect

SDP_OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\n"
    "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"
    "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n"
)
SDP_ANSWER = SDP_OFFER.replace("sendonly", "recvonly").replace("50000", "50002")
#: No limit of the server may be what is measured: the receiving peers answer thousands of offers.
SERVER_FLAGS = (
    "--rate-limit", "1000000", "--rate-burst", "1000000",
    "--rate-limit-bytes", "1000000000", "--rate-burst-bytes", "1000000000",
    "--log-level", "warning",
)  # fmt: skip


async def receiver(url: str, room: str, ready: asyncio.Event) -> None:
    """The room's receiving peer: answers every offer at once."""
    async with SignalingClient.connect(url) as client:
        await client.join(room, name="receiver")
        ready.set()
        async for msg in client:
            if isinstance(msg, RelayedOffer):
                await client.send_answer(msg.from_, SDP_ANSWER)


async def whip_session(http: aiohttp.ClientSession, base: str, room: str) -> None:
    headers = {"Content-Type": "application/sdp"}
    async with http.post(f"{base}/whip/{room}", data=SDP_OFFER, headers=headers) as response:
        assert response.status == 201, response.status
        location = response.headers["Location"]
        await response.read()
    async with http.delete(base + location) as response:
        assert response.status == 200, response.status


async def ws_session(url: str, room: str, to: str) -> None:
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "room": room}))
        await ws.recv()  # welcome
        await ws.send(json.dumps({"type": "offer", "to": to, "sdp": SDP_OFFER}))
        while '"answer"' not in (await ws.recv())[:20]:
            pass


async def measure(mode: str, port: int, pid: int, workers: int, seconds: float) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/ws"
    rooms = [f"bench-{mode}-{i}-{time.monotonic_ns()}" for i in range(workers)]
    readies = [asyncio.Event() for _ in rooms]
    receivers = [asyncio.create_task(receiver(url, room, ready)) for room, ready in zip(rooms, readies, strict=True)]
    await asyncio.gather(*(r.wait() for r in readies))
    targets = []
    async with SignalingClient.connect(url) as probe:
        for room in rooms:
            welcome = await probe.join(room)
            targets.append(welcome.peers[0].peer)
            await probe.leave()
    count = 0
    stop = False

    async def work(room: str, to: str) -> None:
        nonlocal count
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            while not stop:
                if mode == "whip":
                    await whip_session(http, base, room)
                else:
                    await ws_session(url, room, to)
                count += 1

    tasks = [asyncio.create_task(work(room, to)) for room, to in zip(rooms, targets, strict=True)]
    await asyncio.sleep(min(1.0, seconds / 5))  # warm up
    s0 = procstat.snapshot(count, pid)
    await asyncio.sleep(seconds)
    s1 = procstat.snapshot(count, pid)
    stop = True
    await asyncio.gather(*tasks)
    for task in receivers:
        task.cancel()
    for task in receivers:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    figures = procstat.window_figures(s0, s1)
    return {"mode": mode, "sessions_per_s": figures["msgs_per_s"], "srv_us_per_session": figures["srv_us_per_msg"],
            "srv_cores": figures["srv_cores"], "cli_cores": figures["cli_cores"]}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="one run of 2 s per mode")
    common.add_runs(parser)
    parser.add_argument("--json", default=None, help="write the runs and the summary here")
    args = parser.parse_args(argv)
    runs, seconds = (1, 2.0) if args.quick else (args.runs, args.seconds)
    port = procstat.free_port()
    cmd = [sys.executable, "-m", "signaling", "serve", "--port", str(port), *SERVER_FLAGS]
    results: dict[str, list[dict[str, Any]]] = {"ws": [], "whip": []}
    with procstat.started(cmd, "signaling serve", procstat.port_ready(port), env=procstat.server_env()) as (pid, _):
        for _ in range(runs):
            for mode in ("ws", "whip"):
                results[mode].append(asyncio.run(measure(mode, port, pid, args.workers, seconds)))
    rate = {m: [r["sessions_per_s"] for r in rs] for m, rs in results.items()}
    cpu = {m: [r["srv_us_per_session"] for r in rs] for m, rs in results.items()}
    print(f"\n{args.workers} clients, {seconds:g} s per run, {runs} run(s) per mode (median, min-max)\n")
    print("| mode | sessions/s | server CPU per session |")
    print("|---|---|---|")
    names = {"ws": "WebSocket peer: connect, join, offer/answer, close", "whip": "WHIP: POST offer (201), DELETE"}
    for mode in ("ws", "whip"):
        print(f"| {names[mode]} | {common.median_range(rate[mode], '.0f')} | "
              f"{common.median_range(cpu[mode], '.0f')} µs |")  # fmt: skip
    print(f"\nWHIP / WebSocket: sessions/s {common.ratio_cell(rate['whip'], rate['ws'])}, "
          f"server CPU per session {common.ratio_cell(cpu['whip'], cpu['ws'])}")  # fmt: skip
    if args.json:
        common.write_json(args.json, {"runs": results}, 1)


if __name__ == "__main__":
    main()

"""Load generator of bench/bench_ywebrtc.py: y-webrtc clients publishing to topics they are subscribed to.

Run (normally from bench/bench_ywebrtc.py, pinned with ``taskset -c 1``):

    python -m bench.ywebrtc_load fanout --url ws://127.0.0.1:P/y-webrtc [--server-pid PID] [--conns 64]
                                        [--subscribers 2] [--window 4] [--size 250] [--warmup 1] [--duration 5]
    python -m bench.ywebrtc_load idle   --url ws://127.0.0.1:P/y-webrtc --server-pid PID [--conns 2000]

``fanout``: ``--conns`` picows clients (uvloop, orjson); client i subscribes to topic ``t<i // S>`` (S =
``--subscribers``), so every topic has S subscribers. Each client publishes ``--size``-byte messages to its topic,
as y-webrtc's signaling does (``{"type":"publish","topic":..,"data":{...}}``), in a closed loop: at most
``--window`` of its publishes not yet back (a publish reaches its sender too, as the last word that it went
round). Every subscriber receives each publish; the send time rides in ``data.ts``, so each delivery's send ->
receive latency is measured in this process, and ``clients`` must equal S (anything else counts as an error).
After ``--warmup`` s, snapshots bracket a ``--duration`` s window: deliveries/s, publishes/s, latency p50/p99,
the server's CPU (/proc/PID/stat) per delivery.

``idle``: open 10 connections and close them (warm-up), read the server's RSS, open ``--conns`` connections
each subscribed to one topic shared by two (as an open document with one collaborator), wait for each one's
``pong`` after its subscribe, hold 2 s, read the RSS again: KiB per idle subscribed connection.

Traffic goes to the given loopback URL only; every phase is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from array import array
from collections.abc import Sequence
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench import common
from bench.procstat import rss_kib, snapshot, window_figures
from bench.relay_load import close_gracefully, percentile

TEXT = WSMsgType.TEXT
_now_ns = time.perf_counter_ns
_loads = orjson.loads


class Run:
    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.sending = False
        self.recording = False
        self.delivered = 0
        self.published = 0
        self.outstanding = 0  # publishes not yet back at their sender
        self.drained = asyncio.Event()  # set once sending stopped and nothing is outstanding
        self.errors = 0
        self.first_error = ""
        self.latencies_ns = array("q")

    def error(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what[:300]


class Client(WSListener):
    def __init__(self, run: Run, index: int, topic: str, size: int) -> None:
        super().__init__()
        self.run = run
        self.index = index
        self.topic = topic
        self.transport: WSTransport | None = None
        self.pad = "x" * max(0, size - 120)
        self.ponged: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def subscribe(self) -> None:
        assert self.transport is not None
        self.transport.send(TEXT, orjson.dumps({"type": "subscribe", "topics": [self.topic]}))
        self.transport.send(TEXT, b'{"type":"ping"}')

    def publish(self) -> None:
        if self.transport is None:
            return
        data = {"type": "signal", "from": self.index, "ts": _now_ns(), "pad": self.pad}
        self.transport.send(TEXT, orjson.dumps({"type": "publish", "topic": self.topic, "data": data}))
        self.run.outstanding += 1
        self.run.published += 1

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != TEXT:
            common.answer_close(transport, frame)
            return
        now = _now_ns()
        run = self.run
        msg = _loads(frame.get_payload_as_memoryview())
        kind = msg.get("type")
        if kind == "publish":
            data = msg["data"]
            run.delivered += 1
            if msg.get("clients") != run.subscribers:
                run.error(f"clients {msg.get('clients')} in a topic of {run.subscribers}")
            if run.recording:
                run.latencies_ns.append(now - data["ts"])
            if data["from"] == self.index:
                run.outstanding -= 1
                if run.sending:
                    self.publish()
                elif not run.outstanding:
                    run.drained.set()
        elif kind == "pong":
            if not self.ponged.done():
                self.ponged.set_result(None)
        else:
            run.error(bytes(frame.get_payload_as_memoryview()).decode("utf-8", "replace"))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.ponged.done():
            self.ponged.set_exception(ConnectionError("disconnected"))


async def open_clients(url: str, run: Run, count: int, subscribers: int, size: int) -> list[Client]:
    async def connect(i: int) -> Client:
        _, client = await ws_connect(
            lambda: Client(run, i, f"t{i // subscribers}", size), url, websocket_handshake_timeout=10
        )
        assert isinstance(client, Client)
        client.subscribe()
        return client

    clients: list[Client] = []
    for start in range(0, count, 100):  # bounded concurrency of handshakes
        batch = range(start, min(start + 100, count))
        clients += await asyncio.wait_for(asyncio.gather(*(connect(i) for i in batch)), 30)
    await asyncio.wait_for(asyncio.gather(*(c.ponged for c in clients)), 30)
    return clients


async def fanout(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args.subscribers)
    clients = await open_clients(args.url, run, args.conns, args.subscribers, args.size)
    try:
        run.sending = True
        for c in clients:
            for _ in range(args.window):
                c.publish()
        await asyncio.sleep(args.warmup)
        run.recording = True
        s0 = snapshot(run.delivered, args.server_pid, published=run.published)
        await asyncio.sleep(args.duration)
        s1 = snapshot(run.delivered, args.server_pid, published=run.published)
        run.recording = False
        run.sending = False
        if run.outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.drained.wait(), 5)
    finally:
        await close_gracefully(clients)
    figures = window_figures(s0, s1)
    lat = sorted(run.latencies_ns)
    return {
        **figures,
        "publishes_per_s": (s1["published"] - s0["published"]) / figures["seconds"],
        "p50_ms": percentile(lat, 50) / 1e6,
        "p99_ms": percentile(lat, 99) / 1e6,
        "errors": run.errors,
        "first_error": run.first_error,
    }


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(2)
    await close_gracefully(await open_clients(args.url, run, 10, 2, 0))
    await asyncio.sleep(0.5)
    rss0 = rss_kib(args.server_pid)
    started = time.monotonic()
    clients = await open_clients(args.url, run, args.conns, 2, 0)
    opened = time.monotonic() - started
    try:
        await asyncio.sleep(args.hold)
        rss1 = rss_kib(args.server_pid)
        dropped = sum(1 for c in clients if c.transport is None or c.transport.is_disconnected)
    finally:
        await close_gracefully(clients)
    return {
        "conns": args.conns,
        "rss0_kib": rss0,
        "rss1_kib": rss1,
        "kib_per_conn": (rss1 - rss0) / args.conns,
        "open_seconds": opened,
        "errors": dropped + run.errors,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ywebrtc_load", description=__doc__)
    parser.add_argument("mode", choices=("fanout", "idle"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--hold", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not (1 <= args.conns <= 20_000 and 1 <= args.subscribers <= 64 and args.conns % args.subscribers == 0):
        parser.error("conns 1..20000, a multiple of subscribers (1..64)")
    job = fanout(args) if args.mode == "fanout" else idle(args)
    common.run_bounded(job, "uvloop", args.max_seconds)


if __name__ == "__main__":
    main()

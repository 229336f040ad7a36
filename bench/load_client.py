"""The shared load generator: a picows client on uvloop, callback-style (no await per message).

Run (normally from bench_echo / bench_idle, pinned with ``taskset -c 1``):

    python -m bench.load_client echo --port P --server-pid PID [--window 1|100] [--size 250]
                                     [--warmup 1] [--duration 5]
    python -m bench.load_client idle --port P --server-pid PID --conns 2000 [--batch 100] [--hold 2]

``echo`` opens one connection and keeps ``--window`` text messages of ``--size`` bytes in flight: window 1 is
the round-trip test, window 100 the pipelined test. Every reply triggers the next send from inside
``on_ws_frame``. After ``--warmup`` seconds the client snapshots, in the same loop iteration, its reply count,
the server's CPU time (utime + stime from /proc/PID/stat), its own CPU time and the whole machine's busy time
(/proc/stat); it snapshots again after ``--duration`` seconds, stops sending, drains what is in flight, closes,
and prints one JSON object:

    msgs, seconds, msgs_per_s, srv_cores, srv_us_per_msg, cli_cores, machine_cores, excess_cores, errors

``excess_cores`` is machine busy cores minus server and client cores: other load on the shared machine during
the window (the anchors discard a run above 0.2).

``idle`` opens and closes 10 warm-up connections, reads the server's RSS (VmRSS), opens ``--conns``
connections in batches of ``--batch`` (concurrent handshakes within a batch), waits ``--hold`` seconds idle,
reads the RSS again and prints ``rss0_kib, rss1_kib, kib_per_conn, conns``.

Traffic goes to 127.0.0.1 only; every phase is bounded in time and in count, so a run always ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench import common
from bench.procstat import rss_kib, snapshot, window_figures
from bench.servers import raise_nofile_limit


class EchoLoad(WSListener):
    """Keeps ``window`` messages in flight: each reply sends the next one, until ``sending`` goes off."""

    def __init__(self, payload: bytes, window: int) -> None:
        super().__init__()
        self.payload = payload
        self.size = len(payload)
        self.window = window
        self.count = 0
        self.in_flight = 0
        self.errors = 0
        self.sending = True
        self.transport: WSTransport | None = None
        self.drained: asyncio.Future[None] | None = None
        self.disconnected = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def start(self) -> None:
        assert self.transport is not None
        send = self.transport.send
        for _ in range(self.window):
            send(WSMsgType.TEXT, self.payload)
        self.in_flight = self.window

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            return
        self.count += 1
        if frame.payload_size != self.size:
            self.errors += 1
        if self.sending:
            transport.send(WSMsgType.TEXT, self.payload)
        else:
            self.in_flight -= 1
            if self.in_flight == 0 and self.drained is not None and not self.drained.done():
                self.drained.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected = True
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)


async def run_echo(args: argparse.Namespace) -> dict[str, Any]:
    payload = (b"0123456789abcdefghijklmnopqrstuvwxyz" * (args.size // 36 + 1))[: args.size]
    url = f"ws://127.0.0.1:{args.port}/echo"
    transport, load = await asyncio.wait_for(ws_connect(lambda: EchoLoad(payload, args.window), url), 10)
    assert isinstance(load, EchoLoad)
    load.start()
    await asyncio.sleep(args.warmup)
    s0 = snapshot(load.count, args.server_pid)
    await asyncio.sleep(args.duration)
    s1 = snapshot(load.count, args.server_pid)
    load.sending = False
    loop = asyncio.get_running_loop()
    load.drained = loop.create_future()
    if load.in_flight == 0:
        load.drained.set_result(None)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.drained, 5)
    drained = load.in_flight == 0
    transport.send_close(WSCloseCode.OK)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(transport.wait_disconnected(), 3)
    transport.disconnect(graceful=False)

    return {
        "mode": "echo",
        "window": args.window,
        "size": args.size,
        **window_figures(s0, s1),
        "errors": load.errors + (0 if drained else 1),
    }


class Idle(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()


async def _open(url: str, n: int, limit: float) -> list[WSTransport]:
    async def one() -> WSTransport:
        transport, _ = await ws_connect(Idle, url, read_buffer_init_size=1024, websocket_handshake_timeout=limit)
        return transport

    results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n)), return_exceptions=True), limit)
    opened = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        for t in opened:
            t.disconnect(graceful=False)
        raise RuntimeError(f"{len(failed)} of {n} connections failed: {failed[0]!r}")
    return opened


async def run_idle(args: argparse.Namespace) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{args.port}/echo"
    pid = args.server_pid
    warm = await _open(url, 10, 10)
    for t in warm:
        t.send_close(WSCloseCode.OK)
    await asyncio.sleep(0.5)
    for t in warm:
        t.disconnect(graceful=False)
    await asyncio.sleep(0.5)
    rss0 = rss_kib(pid)
    transports: list[WSTransport] = []
    t0 = time.perf_counter()
    try:
        while len(transports) < args.conns:
            transports += await _open(url, min(args.batch, args.conns - len(transports)), 30)
        open_seconds = time.perf_counter() - t0
        await asyncio.sleep(args.hold)
        rss1 = rss_kib(pid)
        alive = sum(1 for t in transports if not t.is_disconnected)
    finally:
        for t in transports:
            t.disconnect(graceful=False)
    return {
        "mode": "idle",
        "conns": args.conns,
        "alive": alive,
        "rss0_kib": rss0,
        "rss1_kib": rss1,
        "kib_per_conn": (rss1 - rss0) / args.conns,
        "open_seconds": open_seconds,
        "errors": args.conns - alive,
    }


def main() -> None:
    parser = common.make_parser(__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    echo = sub.add_parser("echo")
    echo.add_argument("--window", type=int, default=100)
    echo.add_argument("--size", type=int, default=250)
    echo.add_argument("--warmup", type=float, default=1.0)
    echo.add_argument("--duration", type=float, default=5.0)
    idle = sub.add_parser("idle")
    idle.add_argument("--conns", type=int, default=2000)
    idle.add_argument("--batch", type=int, default=100)
    idle.add_argument("--hold", type=float, default=2.0)
    for p in (echo, idle):
        common.add_helper_options(p)
        p.add_argument("--server-pid", type=int, required=True)
    args = parser.parse_args()
    if args.mode == "echo" and not (1 <= args.window <= 10_000 and 1 <= args.size <= 1 << 20):
        parser.error("window must be 1..10000 and size 1..1 MiB")
    if args.mode == "idle":
        if not 1 <= args.conns <= 50_000:
            parser.error("conns must be 1..50000")
        raise_nofile_limit(args.conns + 1024)
    common.run_bounded(run_echo(args) if args.mode == "echo" else run_idle(args), args.loop, args.max_seconds)


if __name__ == "__main__":
    main()

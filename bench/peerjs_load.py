"""Load generator for the PeerJS benchmark (bench/bench_peerjs.py): pairs of PeerJS sockets trickling CANDIDATE
messages to each other, or idle PeerJS sockets held open.

Run (normally from bench/bench_peerjs.py, pinned with ``taskset -c 1``):

    python -m bench.peerjs_load saturate --port P [--server-pid PID] [--pairs 50] [--window 20] [--size 250]
                                         [--warmup 1] [--duration 10]
    python -m bench.peerjs_load idle     --port P --server-pid PID [--count 2000]

Every socket opens ``ws://127.0.0.1:PORT/peerjs/peerjs?key=peerjs&id=<id>&token=<token>`` as the peerjs client
does and waits for ``OPEN``. ``saturate`` is relay_load.py's closed loop in PeerJS words: pair i is ``<run>p<i>a``
and ``<run>p<i>b``; each sender keeps at most ``--window`` CANDIDATE messages of ``--size`` bytes undelivered to
its partner, the send time (``time.perf_counter_ns``) riding in the candidate's foundation:

    {"type":"CANDIDATE","dst":ID,"payload":{"candidate":{"candidate":"candidate:<19 digits> 1 udp ...",
     "sdpMid":"0","sdpMLineIndex":0},"type":"media","connectionId":"mc_bench"}}

Every received message is checked (CANDIDATE, ``src`` the partner); the figures are relay_load.py's
(procstat.window_figures: delivered msgs/s, the server's CPU per message, p50/p99 send -> partner-receive).

``idle``: 20 warm-up sockets opened and closed, then ``--count`` sockets opened (200 handshakes at a time), each
waiting for its OPEN; the server's RSS
is read (/proc/PID/status) before and after: KiB per idle PeerJS connection, as bench_idle.py measures native ones.

Frames are built here (a fresh random mask key each, websockets' C ``apply_mask``) and written once per client
per loop iteration; received frames are parsed by picows. Traffic goes to 127.0.0.1 only; every phase is
bounded in time and count (``--max-seconds`` bounds the run).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from array import array
from collections.abc import Sequence
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from websockets.speedups import apply_mask

from bench import common
from bench.procstat import rss_kib, snapshot, window_figures
from bench.relay_load import CANDIDATE_TAIL, TS_DIGITS, close_all, close_gracefully, percentile

TEXT = WSMsgType.TEXT
_loads = orjson.loads
_now_ns = time.perf_counter_ns
_rand32 = random.getrandbits
TS_START = len("candidate:")


def candidate_template(partner: str, size: int) -> tuple[bytes, bytes]:
    """(prefix, suffix): prefix + 19 digits + suffix is a ``size``-byte PeerJS CANDIDATE for ``partner``."""
    prefix = '{"type":"CANDIDATE","dst":"' + partner + '","payload":{"candidate":{"candidate":"candidate:'
    tail = CANDIDATE_TAIL
    end = '","sdpMid":"0","sdpMLineIndex":0},"type":"media","connectionId":"mc_bench"}}'
    short = size - (len(prefix) + TS_DIGITS + len(tail) + len(end))
    if short > 0:
        tail += "x" * short
    return prefix.encode(), (tail + end).encode()


class Run:
    """What every client of one run shares."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.dirty: list[Client] = []
        self.sending = False
        self.recording = False
        self.delivered = 0
        self.sent = 0
        self.errors = 0
        self.first_error = ""
        self.latencies_ns = array("q")

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for c in dirty:
            c.flush()

    def error(self, what: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = what[:300]


class Client(WSListener):
    """One PeerJS socket."""

    def __init__(self, run: Run, peer_id: str) -> None:
        super().__init__()
        self.run = run
        self.peer_id = peer_id
        self.transport: WSTransport | None = None
        self.partner: Client | None = None
        self.partner_id = ""
        self.prefix = b""
        self.suffix = b""
        self.header = b""
        self.outbox: list[bytes] = []
        self.in_flight = 0
        self.opened: asyncio.Future[None] = run.loop.create_future()
        self.gone = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def send_one(self) -> None:
        if self.transport is None or self.gone:
            return
        run = self.run
        payload = self.prefix + b"%019d" % _now_ns() + self.suffix
        key = _rand32(32).to_bytes(4, "little")
        if not self.outbox:
            if not run.dirty:
                run.loop.call_soon(run.flush)
            run.dirty.append(self)
        self.outbox.append(self.header + key + apply_mask(payload, key))
        self.in_flight += 1
        run.sent += 1

    def flush(self) -> None:
        if self.outbox and self.transport is not None and not self.gone:
            self.transport.underlying_transport.write(b"".join(self.outbox))
        self.outbox.clear()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != TEXT:
            common.answer_close(transport, frame)
            return
        now = _now_ns()
        run = self.run
        msg = _loads(frame.get_payload_as_memoryview())
        kind = msg.get("type")
        if kind == "CANDIDATE":
            sender = self.partner
            if sender is None or msg.get("src") != self.partner_id or msg.get("dst") != self.peer_id:
                run.error(f"CANDIDATE from {msg.get('src')!r} to {msg.get('dst')!r}")
                return
            sent_ns = int(msg["payload"]["candidate"]["candidate"][TS_START : TS_START + TS_DIGITS])
            run.delivered += 1
            if run.recording:
                run.latencies_ns.append(now - sent_ns)
            sender.in_flight -= 1
            if run.sending:
                sender.send_one()
        elif kind == "OPEN":
            if not self.opened.done():
                self.opened.set_result(None)
        else:
            run.error(bytes(frame.get_payload_as_memoryview()).decode("utf-8", "replace"))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gone = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"{self.peer_id} closed before OPEN"))


async def open_clients(args: argparse.Namespace, run: Run, ids: Sequence[str]) -> list[Client]:
    base = f"ws://127.0.0.1:{args.port}/peerjs/peerjs?key=peerjs"

    async def connect(peer_id: str) -> Client:
        def factory() -> Client:
            return Client(run, peer_id)

        url = f"{base}&id={peer_id}&token=t{peer_id}&version=1.5.5"
        _, client = await ws_connect(factory, url, websocket_handshake_timeout=10)
        assert isinstance(client, Client)
        await client.opened
        return client

    clients: list[Client] = []
    try:
        for start in range(0, len(ids), 200):  # bounded concurrency of handshakes
            batch = ids[start : start + 200]
            clients += await asyncio.wait_for(asyncio.gather(*(connect(i) for i in batch)), 60)
    except BaseException:
        close_all(clients)
        raise
    return clients


async def saturate(args: argparse.Namespace) -> dict[str, Any]:
    run = Run()
    ids = [f"{args.run_id}p{i}{side}" for i in range(args.pairs) for side in "ab"]
    clients = await open_clients(args, run, ids)
    try:
        for a, b in zip(clients[0::2], clients[1::2], strict=True):
            a.partner, b.partner = b, a
            a.partner_id, b.partner_id = b.peer_id, a.peer_id
        for c in clients:
            c.prefix, c.suffix = candidate_template(c.partner_id, args.size)
            c.header = common.text_frame_header(len(c.prefix) + TS_DIGITS + len(c.suffix))
        run.sending = True
        for c in clients:
            for _ in range(args.window):
                c.send_one()
        await asyncio.sleep(args.warmup)
        s0 = snapshot(run.delivered, args.server_pid, sent=run.sent)
        run.recording = True
        await asyncio.sleep(args.duration)
        run.recording = False
        s1 = snapshot(run.delivered, args.server_pid, sent=run.sent)
        run.sending = False
        gone = sum(1 for c in clients if c.gone)
    finally:
        await close_gracefully(clients)
    lat = sorted(run.latencies_ns)
    return {
        "mode": "saturate",
        "pairs": args.pairs,
        "window": args.window,
        "size": len(clients[0].prefix) + TS_DIGITS + len(clients[0].suffix),
        **window_figures(s0, s1),
        "p50_ms": percentile(lat, 50) / 1e6,
        "p99_ms": percentile(lat, 99) / 1e6,
        "errors": run.errors + gone,
        "first_error": run.first_error,
    }


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    (pid,) = args.server_pid
    run = Run()
    await close_gracefully(await open_clients(args, run, [f"{args.run_id}w{i}" for i in range(20)]))  # warm-up
    before = rss_kib(pid)
    clients = await open_clients(args, run, [f"{args.run_id}i{i}" for i in range(args.count)])
    try:
        await asyncio.sleep(1.0)  # let the server settle (its allocator, timers) before reading
        after = rss_kib(pid)
    finally:
        await close_gracefully(clients)
    return {
        "mode": "idle",
        "count": args.count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_conn": (after - before) / args.count,
        "errors": run.errors,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    sat = sub.add_parser("saturate", help="closed loop: a window of undelivered messages per sender")
    sat.add_argument("--pairs", type=int, default=50)
    sat.add_argument("--window", type=int, default=20)
    sat.add_argument("--size", type=int, default=250)
    sat.add_argument("--warmup", type=float, default=1.0)
    sat.add_argument("--duration", type=float, default=10.0)
    held = sub.add_parser("idle", help="idle sockets held open: the server's memory per connection")
    held.add_argument("--count", type=int, default=2000)
    for p in (sat, held):
        common.add_helper_options(p)
        p.add_argument("--server-pid", type=int, action="append", required=p is held)
        p.add_argument("--run-id", default="r", help="prefix of the ids (each run its own)")
    args = parser.parse_args(argv)
    if args.mode == "saturate" and not (1 <= args.pairs <= 2000 and 1 <= args.window <= 1000):
        parser.error("pairs must be 1..2000 and window 1..1000")
    if args.mode == "saturate" and not (0 <= args.warmup <= 60 and 0.1 <= args.duration <= 300):
        parser.error("warmup must be 0..60 s and duration 0.1..300 s")
    if args.mode == "idle" and not 1 <= args.count <= 20_000:
        parser.error("count must be 1..20000")
    common.run_bounded(saturate(args) if args.mode == "saturate" else idle(args), args.loop, args.max_seconds)


if __name__ == "__main__":
    main()

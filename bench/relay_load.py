"""Load generator for the relay benchmark: P pairs of signaling clients trickling ICE candidates to each other.

Run (normally from bench/bench_relay.py, pinned with ``taskset -c 1``):

    python -m bench.relay_load saturate --port P [--server-pid PID] [--pairs 50] [--window 20] [--size 250]
                                        [--warmup 1] [--duration 10]
    python -m bench.relay_load rate     --port P [--server-pid PID] [--pairs 50] --rate 20000 [--size 250]
                                        [--warmup 1] [--duration 5]

The client is picows on uvloop, callback-style (no await per message), with orjson, as in
../shared/perf-anchors.md section 3. It opens 2P WebSocket connections to ``ws://127.0.0.1:PORT/ws``; pair i
joins room ``pair<i>`` (``--room-prefix`` goes in front), first A, then B, so A learns B's id from
``peer-joined`` and B learns A's from ``welcome.peers``. With ``--port-b`` every B connects there instead (the
other node of a cluster), so that every message crosses from one node to the other. Then every client sends
``candidate`` messages of ``--size`` bytes (250 by default) to its partner:

    {"type":"candidate","to":ID,"candidate":{"candidate":"candidate:<19-digit send time in ns> 1 udp ...",
     "sdpMid":"0","sdpMLineIndex":0}}

The send time (``time.perf_counter_ns``, CLOCK_MONOTONIC) rides in the candidate's foundation, so the
receiving client, in the same process, computes send -> partner-receive latency from the relayed message.
Every received message is parsed with orjson and checked (``type``, ``from`` = the partner); anything else
counts as an error.

Sending (``--send``): picows' ``transport.send`` makes one write syscall per message, which costs the client
about as much as the relay costs a lean server, so by default (``batch``) the client builds its frames itself
(a fresh random mask key per frame, masked with websockets' C ``apply_mask``) and writes each connection's
queued frames once per event-loop iteration. Receiving stays picows (C frame parser). ``--send picows`` is the
anchors' client. Either way the server sees the same bytes: masked 250-byte text frames, several per read when
the load is high.

``saturate``: closed loop. Each sender keeps at most ``--window`` messages not yet delivered; a credit comes
back when the partner receives one, which sends the next at once (2 x pairs x window in flight: 2,000 by
default). Latency here is queueing at saturation (Little's law: p50 ~ in-flight / throughput).

``rate``: open loop at a fixed offered rate. A pacer wakes every millisecond and sends what the schedule says
is due (``--rate`` x elapsed), round-robin over the 2P senders, whatever has been delivered; a sender with
``--cap`` messages undelivered skips its turn (counted as ``skipped``: the server is not keeping up). The
latency of a lightly loaded server, plus the effect of the 1 ms send bursts (rate / 1000 messages each).

After ``--warmup`` seconds the client snapshots, in one loop iteration, its delivered count, the server's CPU
(utime + stime of ``--server-pid`` from /proc/PID/stat), its own CPU and the machine's busy time; latencies are
recorded only for messages received inside the window; it snapshots again after ``--duration`` seconds, stops
sending, drains what is in flight, closes every connection and prints one JSON object on stdout.

``excess_cores`` is machine busy cores minus server and client cores: other load on the shared machine during
the window (bench_relay retries a run above its noise limit).

Traffic goes to 127.0.0.1 only; every phase is bounded in time and in count (``--max-seconds`` bounds the
whole run), so a run always ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from array import array
from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from websockets.speedups import apply_mask  # C; a client must mask every frame with a fresh key

from bench import common
from bench.procstat import snapshot, window_figures

TEXT = WSMsgType.TEXT
_loads = orjson.loads
_now_ns = time.perf_counter_ns
_rand32 = random.getrandbits

CANDIDATE_TAIL = " 1 udp 1677729535 203.0.113.45 51234 typ srflx raddr 192.168.1.20 rport 51234 generation 0 ufrag Ab3d"
TS_DIGITS = 19
TS_START = len("candidate:")


def candidate_template(partner: str, size: int) -> tuple[bytes, bytes]:
    """(prefix, suffix) so that prefix + 19 digits + suffix is a ``size``-byte candidate message for ``partner``."""
    prefix = '{"type":"candidate","to":"' + partner + '","candidate":{"candidate":"candidate:'
    tail = CANDIDATE_TAIL
    end = '","sdpMid":"0","sdpMLineIndex":0}}'
    short = size - (len(prefix) + TS_DIGITS + len(tail) + len(end))
    if short > 0:
        tail += "x" * short  # a longer ufrag
    return prefix.encode(), (tail + end).encode()


class Run:
    """What all clients of one run share: the counters, the recorded latencies, the sending switches."""

    def __init__(self, closed_loop: bool, batch: bool) -> None:
        self.closed_loop = closed_loop
        self.batch = batch
        self.dirty: list[Client] = []  # clients with frames queued for the next flush (batch mode)
        self.loop = asyncio.get_running_loop()
        self.sending = False
        self.recording = False
        self.delivered = 0
        self.sent = 0
        self.errors = 0
        self.skipped = 0
        self.latencies_ns = array("q")
        self.first_error = ""
        self.drained: asyncio.Future[None] | None = None  # set once sending stops and nothing is in flight

    def flush(self) -> None:
        """Write every queued frame, one write per client (batch mode; runs once per loop iteration)."""
        dirty = self.dirty
        self.dirty = []
        for c in dirty:
            c.flush()

    def check_drained(self) -> None:
        if self.drained is not None and not self.drained.done() and self.sent == self.delivered:
            self.drained.set_result(None)

    def error(self, what: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = what[:300]


class Client(WSListener):
    """One signaling connection: joins, learns its partner, sends candidates, measures what it receives."""

    def __init__(self, run: Run, room: str) -> None:
        super().__init__()
        self.run = run
        self.room = room
        self.transport: WSTransport | None = None
        self.peer = ""
        self.partner_id = ""
        self.partner: Client | None = None
        self.prefix = b""
        self.suffix = b""
        self.in_flight = 0  # sent by this client, not yet received by the partner
        self.header = b""
        self.outbox: list[bytes] = []
        self.welcomed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.paired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def join(self) -> None:
        assert self.transport is not None
        self.transport.send(TEXT, orjson.dumps({"type": "join", "room": self.room}))

    def send_one(self) -> None:
        transport = self.transport
        if transport is None or self.gone:
            return
        run = self.run
        payload = self.prefix + b"%019d" % _now_ns() + self.suffix
        if run.batch:
            key = _rand32(32).to_bytes(4, "little")
            outbox = self.outbox
            if not outbox:
                if not run.dirty:
                    run.loop.call_soon(run.flush)
                run.dirty.append(self)
            outbox.append(self.header + key + apply_mask(payload, key))
        else:
            transport.send(TEXT, payload)
        self.in_flight += 1
        run.sent += 1

    def flush(self) -> None:
        outbox = self.outbox
        if outbox and self.transport is not None and not self.gone:
            self.transport.underlying_transport.write(b"".join(outbox))
        outbox.clear()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != TEXT:
            common.answer_close(transport, frame)
            return
        now = _now_ns()
        run = self.run
        msg = _loads(frame.get_payload_as_memoryview())
        kind = msg.get("type")
        if kind == "candidate":
            sender = self.partner
            if sender is None or msg.get("from") != self.partner_id:
                run.error(f"candidate from {msg.get('from')!r}, partner {self.partner_id!r}")
                return
            sent_ns = int(msg["candidate"]["candidate"][TS_START : TS_START + TS_DIGITS])
            run.delivered += 1
            if run.recording:
                run.latencies_ns.append(now - sent_ns)
            sender.in_flight -= 1
            if run.sending:
                if run.closed_loop:
                    sender.send_one()
            elif run.drained is not None:
                run.check_drained()
        elif kind == "welcome":
            self.peer = msg["peer"]
            others = msg.get("peers") or []
            if others:
                self._paired(others[0]["peer"])
            if not self.welcomed.done():
                self.welcomed.set_result(None)
        elif kind == "peer-joined":
            self._paired(msg["peer"])
        elif kind == "peer-left":
            self.gone = True
        else:
            run.error(bytes(frame.get_payload_as_memoryview()).decode("utf-8", "replace"))

    def _paired(self, partner_id: str) -> None:
        self.partner_id = partner_id
        if not self.paired.done():
            self.paired.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gone = True
        for fut in (self.welcomed, self.paired):
            if not fut.done():
                fut.set_exception(ConnectionError("disconnected before pairing"))


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


async def open_pairs(args: argparse.Namespace, run: Run) -> list[Client]:
    """Connect 2P clients, join A then B of each pair, and wait until every client knows its partner."""
    urls = [f"ws://127.0.0.1:{port}{args.path}" for port in (args.port, args.port_b or args.port)]
    rooms = [f"{args.room_prefix}pair{i}" for i in range(args.pairs)]

    async def connect(index: int) -> Client:
        room = rooms[index // 2]

        def factory() -> Client:
            return Client(run, room)

        _, client = await ws_connect(factory, urls[index % 2], websocket_handshake_timeout=10)
        assert isinstance(client, Client)
        return client

    clients: list[Client] = []
    try:
        for start in range(0, 2 * args.pairs, 200):  # bounded concurrency of handshakes
            batch = range(start, min(start + 200, 2 * args.pairs))
            clients += await asyncio.wait_for(asyncio.gather(*(connect(i) for i in batch)), 30)
        first, second = clients[0::2], clients[1::2]
        for c in first:
            c.join()
        await asyncio.wait_for(asyncio.gather(*(c.welcomed for c in first)), 30)
        for c in second:
            c.join()
        await asyncio.wait_for(asyncio.gather(*(c.paired for c in clients)), 30)
    except BaseException:
        close_all(clients)
        raise
    for a, b in zip(first, second, strict=True):
        a.partner, b.partner = b, a
        if a.partner_id != b.peer or b.partner_id != a.peer:
            close_all(clients)
            raise RuntimeError(f"pairing mismatch in {a.room}: {a.peer}/{a.partner_id} vs {b.peer}/{b.partner_id}")
    for c in clients:
        c.prefix, c.suffix = candidate_template(c.partner_id, args.size)
        c.header = common.text_frame_header(len(c.prefix) + TS_DIGITS + len(c.suffix))
    return clients


class Connected(Protocol):
    """A load client of any of the load generators (this one's, peerjs_load's, ywebrtc_load's)."""

    transport: WSTransport | None


def close_all(clients: Sequence[Connected]) -> None:
    for c in clients:
        if c.transport is not None and not c.transport.is_disconnected:
            c.transport.disconnect(graceful=False)


async def close_gracefully(clients: Sequence[Connected]) -> None:
    for c in clients:
        if c.transport is not None and not c.transport.is_disconnected:
            c.transport.send_close(WSCloseCode.OK)
    waits = [c.transport.wait_disconnected() for c in clients if c.transport is not None]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 3)
    close_all(clients)


class Pacer:
    """Open-loop sender: every ``tick`` seconds, sends what ``rate`` x elapsed says is due, round-robin."""

    def __init__(self, run: Run, clients: Sequence[Client], rate: float, cap: int, tick: float) -> None:
        self.run = run
        self.clients = clients
        self.rate = rate
        self.cap = cap
        self.tick = tick
        self.next = 0
        self.due = 0
        self.max_burst = 0
        self.loop = asyncio.get_running_loop()
        self.t0 = 0.0
        self.handle: asyncio.Handle | None = None

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.handle = self.loop.call_soon(self._tick)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _tick(self) -> None:
        run = self.run
        target = int((time.perf_counter() - self.t0) * self.rate)
        burst = target - self.due
        self.max_burst = max(self.max_burst, burst)
        clients = self.clients
        n = len(clients)
        i = self.next
        cap = self.cap
        for _ in range(burst):
            c = clients[i]
            i += 1
            if i == n:
                i = 0
            if c.in_flight >= cap:
                run.skipped += 1
            else:
                c.send_one()
        self.next = i
        self.due = target
        if self.tick:
            self.handle = self.loop.call_later(self.tick, self._tick)
        else:  # spin: every loop iteration (a few µs apart), so sends go out one or two at a time
            self.handle = self.loop.call_soon(self._tick)


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    closed_loop = args.mode == "saturate"
    run = Run(closed_loop, args.send == "batch")
    clients = await open_pairs(args, run)
    pacer: Pacer | None = None
    try:
        run.sending = True
        if closed_loop:
            for c in clients:
                for _ in range(args.window):
                    c.send_one()
        else:
            pacer = Pacer(run, clients, args.rate, args.cap, args.tick)
            pacer.start()
        await asyncio.sleep(args.warmup)
        s0 = snapshot(run.delivered, args.server_pid, sent=run.sent, skipped=run.skipped)
        run.recording = True
        await asyncio.sleep(args.duration)
        run.recording = False
        s1 = snapshot(run.delivered, args.server_pid, sent=run.sent, skipped=run.skipped)
        run.sending = False
        if pacer is not None:
            pacer.stop()
        run.drained = asyncio.get_running_loop().create_future()
        run.check_drained()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.drained, 5)
        undelivered = sum(c.in_flight for c in clients)
        gone = sum(1 for c in clients if c.gone)
    finally:
        if pacer is not None:
            pacer.stop()
        await close_gracefully(clients)

    window = window_figures(s0, s1)
    lat = sorted(run.latencies_ns)
    result: dict[str, Any] = {
        "mode": args.mode,
        "pairs": args.pairs,
        "size": len(clients[0].prefix) + TS_DIGITS + len(clients[0].suffix),
        **window,
        "sent_per_s": (s1["sent"] - s0["sent"]) / window["seconds"],
        "p50_ms": percentile(lat, 50) / 1e6,
        "p99_ms": percentile(lat, 99) / 1e6,
        "p999_ms": percentile(lat, 99.9) / 1e6,
        "max_ms": (lat[-1] / 1e6) if lat else float("nan"),
        "undelivered": undelivered,
        "errors": run.errors + undelivered + gone,
        "first_error": run.first_error,
    }
    if closed_loop:
        result["window"] = args.window
    else:
        result["rate"] = args.rate
        result["skipped"] = int(s1["skipped"] - s0["skipped"])
        result["max_burst"] = pacer.max_burst if pacer is not None else 0
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    sat = sub.add_parser("saturate", help="closed loop: a window of undelivered messages per sender")
    sat.add_argument("--window", type=int, default=20)
    sat.add_argument("--duration", type=float, default=10.0)
    rate = sub.add_parser("rate", help="open loop at a fixed offered rate")
    rate.add_argument("--rate", type=float, default=20_000.0, help="messages/s offered, all senders together")
    rate.add_argument("--cap", type=int, default=500, help="undelivered messages per sender before it skips")
    tick_help = "pacer period in seconds; 0: spin (every loop iteration, evenly spaced sends; burns the core)"
    rate.add_argument("--tick", type=float, default=0.001, help=tick_help)
    rate.add_argument("--duration", type=float, default=5.0)
    for p in (sat, rate):
        common.add_helper_options(p)
        p.add_argument("--path", default="/ws")
        p.add_argument(
            "--server-pid",
            type=int,
            action="append",
            help="whose CPU to sample over the window (repeat for a server side of several processes)",
        )
        p.add_argument(
            "--port-b",
            type=int,
            default=None,
            help="where the second client of each pair connects (another node of a cluster); default --port",
        )
        p.add_argument("--pairs", type=int, default=50)
        p.add_argument("--size", type=int, default=250, help="bytes per candidate message sent")
        p.add_argument("--room-prefix", default="")
        p.add_argument("--warmup", type=float, default=1.0)
        p.add_argument(
            "--send",
            choices=("batch", "picows"),
            default="batch",
            help="batch: frames built here (fresh random mask each), one write per client per loop iteration; "
            "picows: transport.send per message (a write syscall each, as the anchors' client did)",
        )
    args = parser.parse_args(argv)
    if not 1 <= args.pairs <= 5000:
        parser.error("pairs must be 1..5000")
    if args.mode == "saturate" and not 1 <= args.window <= 1000:
        parser.error("window must be 1..1000")
    if args.mode == "rate" and not (1 <= args.rate <= 1_000_000 and (args.tick == 0 or 0.0005 <= args.tick <= 0.1)):
        parser.error("rate must be 1..1e6 msgs/s and tick 0 (spin) or 0.0005..0.1 s")
    if not (0 <= args.warmup <= 60 and 0.1 <= args.duration <= 300):
        parser.error("warmup must be 0..60 s and duration 0.1..300 s")
    common.run_bounded(run_load(args), args.loop, args.max_seconds)


if __name__ == "__main__":
    main()

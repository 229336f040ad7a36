"""Webhooks: what they cost the relay, and how soon an event reaches the backend, on one node and on two.

Run: python -m bench.bench_webhooks [--runs 3] [--setups "one node,two nodes"] [--churn-rate 100]
                                    [--duration 10] [--quick] [--json OUT.json]

Each set-up (bench_cluster's ``one node`` in memory, ``two nodes`` on one redis-server; the server side pinned
to CPU 0, this process and the load generator to CPU 1) runs with webhooks off and on (every node sends to a
receiver in this process, a thread of its own that answers 204 and checks nothing), interleaved run by run:

- relay: bench_relay's saturation load (50 pairs trickling 250-byte ``candidate`` messages; pairs split across
  the nodes with two): delivered msgs/s, p99 and server µs per message. The relay's path has no webhook code
  (events are recorded at joins and leaves), so on/off should be 1.0x within noise;
- churn: ``--churn-rate`` peers a second join a room of 4 (20 rooms' worth of clients, round-robin over the
  nodes) and leave again, for ``--duration`` seconds: the join's round trip (join sent to welcome), and with
  webhooks on, each event's delivery latency (its arrival at the receiver minus its ``timestamp``, the moment
  the room changed: the sender's wait for the outbox, the HTTP exchange and, with two nodes, the hop through
  the Redis outbox to the node that sends), and the server side's CPU per event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bench import common
from bench.bench_cluster import measure as relay_measure
from bench.bench_cluster import server_side
from bench.procstat import proc_cpu_seconds, wait_quiet
from signaling.app.webhooks import new_secret
from signaling.ws.aio.client import connect

SETUPS = ("one node", "two nodes")
ROOM_SIZE = 4
WORKERS = 20 * ROOM_SIZE


class Receiver:
    """A webhook receiver on its own thread and loop: answers 204 at once, records each event's latency."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = head.lower().split(b"\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in fields if line.startswith(b"content-length:"))
                body = await reader.readexactly(length)
                arrived = time.time()
                stamp = json.loads(body)["timestamp"]
                self.latencies.append(arrived - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        writer.close()

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def churn(ports: list[int], rate: float, duration: float, prefix: str) -> list[float]:
    """Peers join rooms of ROOM_SIZE and leave, ``rate`` joins a second in all; the joins' round trips."""
    rtts: list[float] = []
    period = WORKERS / rate
    stop = time.monotonic() + duration

    async def worker(i: int) -> None:
        await asyncio.sleep(random.uniform(0, period))
        url = f"ws://127.0.0.1:{ports[i % len(ports)]}/ws"
        room = f"{prefix}-{i // ROOM_SIZE}"
        while time.monotonic() < stop:
            started = time.monotonic()
            async with connect(url) as ws:
                sent = time.perf_counter()
                await ws.send(json.dumps({"type": "join", "room": room}))
                while json.loads(await ws.recv())["type"] != "welcome":
                    pass
                rtts.append(time.perf_counter() - sent)
                await ws.send('{"type":"leave"}')
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    await asyncio.gather(*(worker(i) for i in range(WORKERS)))
    return rtts


def churn_phase(
    ports: list[int], pids: list[int], receiver: Receiver | None, opts: argparse.Namespace, prefix: str
) -> dict[str, Any]:
    wait_quiet(opts.quiet_limit, opts.quiet_wait, sample=0.5)
    if receiver is not None:
        receiver.take()
    cpu0 = sum(proc_cpu_seconds(pid) for pid in pids)
    rtts = asyncio.run(churn(ports, opts.churn_rate, opts.duration, prefix))
    result: dict[str, Any] = {
        "joins_per_s": len(rtts) / opts.duration,
        "join_p50_ms": percentile(rtts, 0.5) * 1000,
        "join_p99_ms": percentile(rtts, 0.99) * 1000,
    }
    if receiver is None:
        time.sleep(0.5)  # as long as the other waits below, for the same CPU window
        cpu = sum(proc_cpu_seconds(pid) for pid in pids) - cpu0
    else:
        expected = 2 * len(rtts)  # each join and each leave; starts and finishes come on top
        deadline = time.monotonic() + 30
        while len(receiver.latencies) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the rooms' last finishes
        latencies = receiver.take()
        cpu = sum(proc_cpu_seconds(pid) for pid in pids) - cpu0
        result |= {
            "events": len(latencies),
            "event_p50_ms": percentile(latencies, 0.5) * 1000,
            "event_p99_ms": percentile(latencies, 0.99) * 1000,
        }
    # The server side's CPU per join-and-leave (connection, handshake, join, leave, close; with webhooks, their
    # four-odd events too): on minus off is what the webhooks cost.
    result["srv_us_per_join"] = cpu / max(1, len(rtts)) * 1e6
    return result


def run_one(setup: str, hooks: bool, receiver: Receiver, opts: argparse.Namespace, run: int) -> dict[str, Any]:
    extra: tuple[str, ...] = ()
    if hooks:
        extra = ("--webhook-urls", f"http://127.0.0.1:{receiver.port}/hooks", "--webhook-secret", new_secret())
    tag = f"r{run}{SETUPS.index(setup)}{int(hooks)}"
    with server_side(setup, opts.server_cpu, extra) as (ports, pids, _):
        relay = relay_measure("saturate", ports, pids, opts, tag + "s")
        churned = churn_phase(ports, pids, receiver if hooks else None, opts, tag + "c")
    line = (
        f"  {setup}, webhooks {'on' if hooks else 'off'}: relay {relay['msgs_per_s']:,.0f} msgs/s "
        f"p99 {relay['p99_ms']:.1f} ms {relay['srv_us_per_msg']:.1f} µs/msg; joins {churned['joins_per_s']:.0f}/s "
        f"p50 {churned['join_p50_ms']:.2f} p99 {churned['join_p99_ms']:.2f} ms"
    )
    if hooks:
        line += f"; {churned['events']} events p50 {churned['event_p50_ms']:.1f} p99 {churned['event_p99_ms']:.1f} ms"
    line += f", {churned['srv_us_per_join']:.0f} µs/join"
    print(line, file=sys.stderr, flush=True)
    return {"relay": relay, "churn": churned}


def print_tables(results: dict[str, dict[str, list[dict[str, Any]]]], opts: argparse.Namespace) -> None:
    span = common.median_range
    runs = max(len(rs) for by in results.values() for rs in by.values())
    window = f"{opts.pairs} pairs, window {opts.window}, {opts.duration:g} s"
    print(f"\nRelay with webhooks off and on ({window}); median of {runs}\n")
    print(
        *common.table_head("| set-up | webhooks | msgs/s | p99 ms | srv µs/msg | on/off msgs/s | on/off µs/msg |"),
        sep="\n",
    )
    for setup, by in results.items():
        off, on = by["off"], by["on"]
        for name, rs in (("off", off), ("on", on)):
            relay = [r["relay"] for r in rs]
            ratios = "| |"
            if name == "on":
                msgs = common.ratio_cell([r["msgs_per_s"] for r in relay], [r["relay"]["msgs_per_s"] for r in off])
                cpu = common.ratio_cell(
                    [r["srv_us_per_msg"] for r in relay], [r["relay"]["srv_us_per_msg"] for r in off]
                )
                ratios = f"| {msgs} | {cpu} |"
            print(
                f"| {setup} | {name} | {span([r['msgs_per_s'] for r in relay], ',.0f')} "
                f"| {span([r['p99_ms'] for r in relay], '.1f')} | {span([r['srv_us_per_msg'] for r in relay], '.1f')} "
                f"{ratios}"
            )
    offered = f"{opts.churn_rate:g} joins/s offered in rooms of {ROOM_SIZE}, {opts.duration:g} s"
    print(f"\nChurn: {offered}; median of {runs} (event latencies in ms)\n")
    head = "| set-up | webhooks | joins/s | join p50 ms | join p99 ms | srv µs/join | events | event p50 | event p99 |"
    print(*common.table_head(head), sep="\n")
    for setup, by in results.items():
        for name in ("off", "on"):
            rs = [r["churn"] for r in by[name]]
            row = (
                f"| {setup} | {name} | {span([r['joins_per_s'] for r in rs], '.0f')} "
                f"| {span([r['join_p50_ms'] for r in rs], '.2f')} | {span([r['join_p99_ms'] for r in rs], '.2f')} "
                f"| {span([r['srv_us_per_join'] for r in rs], '.0f')} "
            )
            if name == "on":
                row += (
                    f"| {span([r['events'] for r in rs], '.0f')} | {span([r['event_p50_ms'] for r in rs], '.1f')} "
                    f"| {span([r['event_p99_ms'] for r in rs], '.1f')} |"
                )
            else:
                row += "| | | |"
            print(row)


def main(argv: Sequence[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    common.add_runs(parser)
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated, of: " + ", ".join(SETUPS))
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of relay, and of churn")
    parser.add_argument("--churn-rate", type=float, default=100.0, help="joins a second, all clients together")
    parser.add_argument("--quick", action="store_true", help="1 run, 3 s windows, 1 attempt")
    common.add_cpu_pinning(parser)
    common.add_retry_options(parser, attempts=3)
    parser.add_argument("--quiet-limit", type=float, default=0.3)
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--json", metavar="PATH", help="write every result as JSON")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.runs, opts.duration, opts.attempts = 1, 3.0, 1
    opts.rate = opts.rate_duration = 0  # (bench_cluster's fixed-rate options; only its saturation runs here)
    setups = [s.strip() for s in opts.setups.split(",") if s.strip()]
    if set(setups) - set(SETUPS):
        parser.error("unknown set-ups")
    if opts.client_cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {opts.client_cpu})
    receiver = Receiver()
    receiver.start()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {"off": [], "on": []} for s in setups}
    for run in range(opts.runs):
        for setup in setups:
            for hooks in (False, True):
                print(f"run {run + 1}/{opts.runs}: {setup}, webhooks {'on' if hooks else 'off'}", file=sys.stderr)
                results[setup]["on" if hooks else "off"].append(run_one(setup, hooks, receiver, opts, run))
    print_tables(results, opts)
    if opts.json:
        common.write_json(opts.json, {"options": vars(opts), "results": results}, indent=1)


if __name__ == "__main__":
    main()

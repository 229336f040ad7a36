"""Load on one server process: many joined connections at once, and clients that keep coming and going.

- ``held``: N connections (10,000 by default) joined in rooms of 8 and held open; meanwhile two other clients
  measure relay round trips (p50/p99). Reported: the server's memory per joined connection, and the round
  trips with and without the crowd.
- ``churn``: C clients (1,000) each joining a room, relaying to it, leaving and reconnecting, in a loop, for S
  seconds (60). Reported: cycles, unexpected closes or errors (there must be none), and after they stop the
  server's rooms, peers and connections (all 0) and its memory against the baseline before.

The held clients come from many loopback addresses (127.0.X.Y), 60 per address; the per-address limits are off
(the churning clients share 127.0.0.1, and those limits are bench_abuse's subject, not this one's). The client side
runs in its own process: ``python -m bench.bench_load clients ...``.

Run: python -m bench.bench_load [held|churn|both] [--conns 10000] [--churn-clients 1000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

from bench import common, procstat
from bench.abuse_attacks import REQUEST, frame, source
from signaling.ws.aio.client import connect

PER_ADDRESS = 60


# ------------------------------------------------------------------------------------------ the client side


class Held(asyncio.Protocol):
    """A joined connection that reads and drops everything: the cheapest honest client."""

    def __init__(self, join: bytes, done: asyncio.Future[None]) -> None:
        self.join = join
        self.done = done
        self.buf = b""
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(REQUEST.format(port=0).encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            if not self.done.done() and b'"welcome"' in data:
                self.done.set_result(None)
            return
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.upgraded = True
            self.transport.write(self.join)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("closed before welcome"))


async def hold(port: int, conns: int) -> None:
    loop = asyncio.get_running_loop()
    opened = 0
    for start in range(0, conns, 500):
        futures = []
        for i in range(start, min(conns, start + 500)):
            done: asyncio.Future[None] = loop.create_future()
            join = frame(0x1, json.dumps({"type": "join", "room": f"held{i // 8}"}).encode())
            address = (source(i // PER_ADDRESS), 0)
            await loop.create_connection(functools.partial(Held, join, done), "127.0.0.1", port, local_addr=address)
            futures.append(done)
        await asyncio.wait_for(asyncio.gather(*futures), 60)
        opened += len(futures)
    print(json.dumps({"held": opened}), flush=True)
    await asyncio.Event().wait()  # until SIGTERM


async def churn(port: int, clients: int, seconds: float) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{port}/ws"
    deadline = time.monotonic() + seconds
    cycles = 0
    problems: list[str] = []

    async def one(i: int) -> None:
        nonlocal cycles
        room = f"churn{i % (clients // 8 or 1)}"
        while time.monotonic() < deadline:
            try:
                async with connect(url, open_timeout=10) as ws:
                    await ws.send(json.dumps({"type": "join", "room": room}))
                    while json.loads(await ws.recv())["type"] != "welcome":
                        pass
                    await ws.send(json.dumps({"type": "message", "data": {"from": i}}))
                    await ws.send(json.dumps({"type": "ping", "id": 1}))
                    while json.loads(await ws.recv())["type"] != "pong":
                        pass
                    await ws.send(json.dumps({"type": "leave"}))
                cycles += 1
            except Exception as exc:
                problems.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(_staggered(i, one) for i in range(clients)))
    return {"clients": clients, "seconds": seconds, "cycles": cycles, "problems": len(problems), "first": problems[:5]}


async def _staggered(i: int, job: Any) -> None:
    await asyncio.sleep(i * 0.002)  # spread the first connections over two seconds
    await job(i)


# ------------------------------------------------------------------------------------------ the measuring side


def healthz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


async def round_trips(port: int, seconds: float) -> list[float]:
    url = f"ws://127.0.0.1:{port}/ws"
    rtts: list[float] = []
    async with connect(url) as a, connect(url) as b:
        ids = []
        for ws in (a, b):
            await ws.send(json.dumps({"type": "join", "room": "rtt"}))
            while (msg := json.loads(await ws.recv()))["type"] != "welcome":
                pass
            ids.append(msg["peer"])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            await a.send(json.dumps({"type": "message", "to": ids[1], "data": 1}))
            while json.loads(await b.recv())["type"] != "message":
                pass
            await b.send(json.dumps({"type": "message", "to": ids[0], "data": 2}))
            while json.loads(await a.recv())["type"] != "message":
                pass
            rtts.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(0.05)
    return rtts


def pcts(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100)
    return {"p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2), "n": len(values)}


def client_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.bench_load", "clients", *args], stdout=subprocess.PIPE, text=True
    )


def run_held(pid: int, port: int, conns: int) -> dict[str, Any]:
    quiet = pcts(asyncio.run(round_trips(port, 10)))
    before = procstat.rss_kib(pid)
    clients = client_process("held", "--port", str(port), "--conns", str(conns))
    try:
        assert clients.stdout is not None
        line = clients.stdout.readline()
        held = json.loads(line)["held"]
        after = procstat.rss_kib(pid)
        crowded = pcts(asyncio.run(round_trips(port, 10)))
        health = healthz(port)
    finally:
        clients.send_signal(signal.SIGTERM)
        clients.wait(30)
    return {
        "held": held,
        "server_peers": health["peers"],
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_joined_connection": round((after - before) / held, 2),
        "rtt_quiet": quiet,
        "rtt_with_crowd": crowded,
    }


def run_churn(pid: int, port: int, clients: int, seconds: float) -> dict[str, Any]:
    before = procstat.rss_kib(pid)
    proc = client_process("churn", "--port", str(port), "--churn-clients", str(clients), "--seconds", str(seconds))
    out, _ = proc.communicate(timeout=seconds + 120)
    result = json.loads(out.strip().splitlines()[-1])
    deadline = time.monotonic() + 10
    while (health := healthz(port))["connections"] and time.monotonic() < deadline:
        time.sleep(0.2)
    return {
        **result,
        "after": {k: health[k] for k in ("connections", "rooms", "peers", "tasks") if k in health},
        "rss_before_kib": before,
        "rss_after_kib": procstat.rss_kib(pid),
    }


def main(argv: list[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("what", nargs="?", default="both", choices=["held", "churn", "both", "clients"])
    parser.add_argument("mode", nargs="?", help=argparse.SUPPRESS)  # for "clients": held or churn
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--conns", type=int, default=10_000, help="held connections (default 10,000)")
    parser.add_argument("--churn-clients", type=int, default=1000, help="churning clients (default 1,000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="churn duration (default 60)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.what == "clients":
        if args.mode == "held":
            asyncio.run(hold(args.port, args.conns))
        else:
            common.run_bounded(churn(args.port, args.churn_clients, args.seconds), "asyncio", args.seconds + 90)
        os._exit(0)
    port = procstat.free_port()
    cmd = [sys.executable, "-m", "signaling", "serve", "--port", str(port), "--log-level", "warning"]
    cmd += ["--max-connections", str(args.conns + 1000), "--no-uvloop"]
    # The per-address limits are not what is measured (bench_abuse is about them): every client here is local.
    cmd += ["--max-connections-per-ip", "0", "--connection-rate-per-ip", "0", "--max-handshakes-per-ip", "0"]
    results: dict[str, Any] = {}
    with procstat.started(cmd, "signaling serve", procstat.port_ready(port), env=procstat.server_env()) as (pid, _):
        if args.what in ("held", "both"):
            results["held"] = run_held(pid, port, args.conns)
            print(json.dumps(results["held"]), flush=True)
        if args.what in ("churn", "both"):
            results["churn"] = run_churn(pid, port, args.churn_clients, args.seconds)
            print(json.dumps(results["churn"]), flush=True)
    if args.json:
        common.write_json(args.json, results, indent=2)


if __name__ == "__main__":
    main()

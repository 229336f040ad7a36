"""Attacks against a running server, each measured by what well-behaved clients see meanwhile.

For every attack (bench/abuse_attacks.py), the server (``python -m signaling serve`` with its defaults) runs
two windows: quiet, then under attack. Throughout, two honest clients in room "probe" relay messages to each
other (20 round trips a second) and a third connects and joins every 250 ms. Reported per window: relay round
trip p50/p99, connect + join p50/p99, unexpected closes of the honest clients; per attack: how many attacking
connections, how the server ended them (close codes, HTTP statuses) and how fast, and the server's memory per
attacking connection at the peak. The goals (issue 10): round trip p99 under 50 ms and connect + join under
200 ms while attacked, or the attacker closed within a couple of seconds, and memory per attacking connection
bounded.

Run: python -m bench.bench_abuse [--attacks slowloris,ping-flood] [--seconds 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from bench import common, procstat
from bench.abuse_attacks import NAMES
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.exceptions import ConnectionClosed

#: Attacking connections per attack (attacks that join the probe room stay under its 8 peers).
CONNS = {
    "slowloris": 2000,
    "unfinished-fragments": 500,
    "empty-fragment-flood": 20,
    "ping-flood": 20,
    "ping-flood-no-read": 20,
    "many-fragments": 20,
    "refused-flood": 20,
    "deep-nesting": 20,
    "byte-burst": 1,
    "slow-consumer": 5,
    "never-join": 3000,
}


@dataclass
class Window:
    rtt_ms: list[float] = field(default_factory=list)
    join_ms: list[float] = field(default_factory=list)
    join_failures: int = 0
    unexpected_closes: list[str] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            return round(statistics.quantiles(values, n=100)[int(q) - 1], 2) if len(values) > 1 else values[0]

        return {
            "rtt_p50_ms": pct(self.rtt_ms, 50),
            "rtt_p99_ms": pct(self.rtt_ms, 99),
            "round_trips": len(self.rtt_ms),
            "join_p50_ms": pct(self.join_ms, 50),
            "join_p99_ms": pct(self.join_ms, 99),
            "joins": len(self.join_ms),
            "join_failures": self.join_failures,
            "unexpected_closes": self.unexpected_closes,
            "rss_peak_kib": max(self.rss_kib) if self.rss_kib else None,
        }


class Probe:
    """Two honest clients relaying to each other in room "probe", and a third that keeps joining."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.window = Window()
        self.a: ClientConnection | None = None
        self.b: ClientConnection | None = None
        self.b_id = ""
        self.a_id = ""
        self._pending: dict[int, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.a = await connect(self.url)
        self.b = await connect(self.url)
        self.a_id = await self._join(self.a, "probe")
        self.b_id = await self._join(self.b, "probe")
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_a()),
            loop.create_task(self._echo_b()),
            loop.create_task(self._send_a()),
            loop.create_task(self._joins()),
        ]

    async def _join(self, ws: ClientConnection, room: str) -> str:
        await ws.send(json.dumps({"type": "join", "room": room}))
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "welcome":
                return str(msg["peer"])

    async def _send_a(self) -> None:
        assert self.a is not None
        seq = 0
        while True:
            seq += 1
            self._pending[seq] = time.perf_counter()
            with contextlib.suppress(ConnectionClosed):
                await self.a.send(json.dumps({"type": "message", "to": self.b_id, "data": {"seq": seq}}))
            await asyncio.sleep(0.05)

    async def _messages(self, side: str, ws: ClientConnection, sender: str) -> AsyncIterator[Any]:
        """The ``data`` of the messages ``sender`` sends to ``ws`` until it closes (an unexpected close is noted)."""
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "message" and msg.get("from") == sender:
                    yield msg["data"]
        except ConnectionClosed as exc:
            self.window.unexpected_closes.append(f"{side}: {exc.code} {exc.reason}")

    async def _echo_b(self) -> None:
        assert self.b is not None
        async for data in self._messages("b", self.b, self.a_id):
            with contextlib.suppress(ConnectionClosed):
                await self.b.send(json.dumps({"type": "message", "to": self.a_id, "data": data}))

    async def _read_a(self) -> None:
        assert self.a is not None
        async for data in self._messages("a", self.a, self.b_id):
            sent = self._pending.pop(data["seq"], None)
            if sent is not None:
                self.window.rtt_ms.append((time.perf_counter() - sent) * 1000)

    async def _joins(self) -> None:
        n = 0
        while True:
            n += 1
            started = time.perf_counter()
            try:
                async with asyncio.timeout(5):
                    async with connect(self.url) as ws:
                        await self._join(ws, f"joins{n}")
                self.window.join_ms.append((time.perf_counter() - started) * 1000)
            except Exception:
                self.window.join_failures += 1
            await asyncio.sleep(0.25)

    def next_window(self) -> Window:
        done, self.window = self.window, Window()
        self._pending.clear()
        return done

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for ws in (self.a, self.b):
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()


async def sample_rss(pid: int, window: Callable[[], Window], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError, RuntimeError):
            window().rss_kib.append(procstat.rss_kib(pid))
        await asyncio.sleep(0.1)


async def measure(pid: int, port: int, attacks: list[str], seconds: float) -> list[dict[str, Any]]:
    probe = Probe(f"ws://127.0.0.1:{port}/ws")
    await probe.start()
    stop = asyncio.Event()
    sampler = asyncio.get_running_loop().create_task(sample_rss(pid, lambda: probe.window, stop))
    rows = []
    try:
        for attack in attacks:
            await asyncio.sleep(seconds)
            quiet = probe.next_window()
            attacker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.abuse_attacks",
                attack,
                "--port",
                str(port),
                "--seconds",
                str(seconds),
                "--conns",
                str(CONNS[attack]),
                stdout=subprocess.PIPE,
            )
            began = time.monotonic()
            out, _ = await attacker.communicate()
            # A window as long as the quiet one, even when the server ended the attack sooner: how long the
            # honest clients suffer is the point.
            await asyncio.sleep(max(0.0, seconds - (time.monotonic() - began)))
            attacked = probe.next_window()
            result = json.loads(out.decode().strip().splitlines()[-1])
            base = statistics.median(quiet.rss_kib) if quiet.rss_kib else 0
            peak = max(attacked.rss_kib) if attacked.rss_kib else 0
            alive = max(1, result["opened"])
            rows.append(
                {
                    "attack": attack,
                    "quiet": quiet.summary(),
                    "attacked": attacked.summary(),
                    "attacker": result,
                    "rss_per_attacking_conn_kib": round(max(0, peak - base) / alive, 1),
                }
            )
            print_row(rows[-1])
            await asyncio.sleep(2)  # let the server settle (closes, the join deadline of never-join)
    finally:
        stop.set()
        sampler.cancel()
        await probe.stop()
    return rows


def fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def pair(window: dict[str, Any], what: str) -> str:
    return f"{fmt(window[what + '_p50_ms'])}/{fmt(window[what + '_p99_ms'])}"


def print_row(row: dict[str, Any]) -> None:
    q, a, r = row["quiet"], row["attacked"], row["attacker"]
    ended = ", ".join(f"{k}x{v}" for k, v in sorted({**r["refused"], **r["closed"]}.items()))
    print(
        f"{row['attack']:<22} conns {r['opened']:>5}  rtt p50/p99 {pair(q, 'rtt')} -> {pair(a, 'rtt')} ms  "
        f"join p50/p99 {pair(q, 'join')} -> {pair(a, 'join')} ms (fail {a['join_failures']})  "
        f"ended [{ended}] p50 {fmt(r['close_after_p50'], 's')}  "
        f"rss/conn {row['rss_per_attacking_conn_kib']} KiB  honest closes {a['unexpected_closes'] or 0}",
        flush=True,
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| attack | attacking conns | round trip p50/p99 quiet -> attacked (ms) | connect+join p50/p99 (ms) "
        "| how the server ended them | memory per attacking conn |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        q, a, r = row["quiet"], row["attacked"], row["attacker"]
        ended = ", ".join(f"{v}x {k}" for k, v in sorted({**r["refused"], **r["closed"]}.items()))
        after = f" (p50 after {r['close_after_p50']:.2f} s)" if r["close_after_p50"] is not None else ""
        lines.append(
            f"| {row['attack']} | {r['opened']} | {pair(q, 'rtt')} -> {pair(a, 'rtt')} "
            f"| {pair(q, 'join')} -> {pair(a, 'join')} | {ended or '-'}{after} "
            f"| {row['rss_per_attacking_conn_kib']} KiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--attacks", default=",".join(NAMES), help="comma-separated, from: " + ", ".join(NAMES))
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each quiet and attacked window")
    parser.add_argument("--quick", action="store_true", help="3 s windows")
    parser.add_argument("--json", help="write the rows here")
    args: argparse.Namespace = parser.parse_args(argv)
    attacks = common.chosen(parser, args.attacks, NAMES)
    seconds = 3.0 if args.quick else args.seconds
    port = procstat.free_port()
    cmd = [sys.executable, "-m", "signaling", "serve", "--port", str(port), "--log-level", "warning", "--no-uvloop"]
    with procstat.started(cmd, "signaling serve", procstat.port_ready(port), env=procstat.server_env()) as (pid, _):
        rows = asyncio.run(measure(pid, port, attacks, seconds))
    print()
    print(markdown(rows))
    if args.json:
        common.write_json(args.json, {"seconds": seconds, "rows": rows}, indent=2)


if __name__ == "__main__":
    main()

"""A two-node cluster under attack, measured by what honest clients see meanwhile and by what the attack holds.

Run: python -m bench.bench_cluster_abuse [--attacks fanout,ghosts] [--seconds 8] [--quick] [--json OUT.json]
                                         [--tree PATH]

For each attack (bench/cluster_attacks.py) the bench starts a fresh cluster: one ``redis-server`` on a free
loopback port (``--save '' --appendonly no``, Redis's defaults otherwise: the pubsub client output buffer limit
is 32mb 8mb 60) and two nodes, ``python -m signaling serve --host 127.0.0.1 --port P --redis-url ... --uvloop``
with every other setting at its default. Twenty honest bystanders, 10 pairs with one peer on each node, each
pair in its own resumable room, relay round trips (20 a second per pair, every one crossing Redis) through the
windows: quiet (``--seconds``); the attackers' set-up (connecting at their addresses' rate; not reported apart);
attacked (``--seconds``); and 2 s after it. Every 0.1 s the bench samples Redis's ``used_memory`` (INFO memory)
and its largest recent client output buffer (INFO clients), and the RSS of Redis and of each node.

Reported per attack: honest round trip p50/p99 per window, with the round trips made and those left
unanswered; the bystanders the server closed, with their close codes (a closed pair stops: no reconnecting);
Redis used_memory and node RSS (quiet median, peak, after); the cores used by Redis, each node, the bystanders,
the attacker and the rest of the machine (other sessions share it: "other load"); the memory attributable to
each attacking address (the largest sum, over one sample, of Redis used_memory growth and both nodes' RSS growth
over their quiet medians, divided by the attacking addresses); what Redis and /healthz say is left (rooms,
peers, sessions in their grace period); the clients Redis closed for their output buffer limit (its log); and
what the nodes logged at warning and above. The targets, printed next to the figures: no bystander closed,
honest p99 under 50 ms, at most 32 MiB per attacking address, and the victim of resume-guess resumes.

``--tree PATH`` runs the nodes from another source tree (cwd and PYTHONPATH set to it, the same python), so
that a tree before a change and one after it can be compared; the bystanders and attackers are this tree's.
One full run takes about 3 minutes (seven attacks, 8 s windows); ``--quick`` (4 s windows) about 2.
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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import common, procstat
from bench.abuse_cluster import Cluster, cluster, code_under_test, http_get, logged_events, redis_disconnects
from bench.cluster_attacks import NAMES
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parents[1]
PAIRS = 10
#: Seconds of the window after the attack: what is left once it stopped.
SETTLE = 2.0
TARGET_P99_MS = 50.0
TARGET_MIB_PER_ADDRESS = 32.0
MIB = 1024 * 1024
#: The default resume grace and a ghost a tenth of a second from one address: what one address keeps alive.
GRACE = 30.0
GHOSTS_PER_S = 10.0


# ------------------------------------------------------------------------------------------------ measuring


@dataclass
class Window:
    rtt_ms: list[float] = field(default_factory=list)
    closes: list[str] = field(default_factory=list)
    #: (Redis used_memory bytes, Redis RSS KiB, node 1 RSS KiB, node 2 RSS KiB) every 0.1 s.
    samples: list[tuple[int, int, int, int]] = field(default_factory=list)
    unanswered: int = 0  # round trips still unanswered (after 0.5 s at least) when the window ended
    max_output_buffer: int = 0  # Redis's client_recent_max_output_buffer, bytes
    cpu: list[float] = field(default_factory=list)  # CPU seconds at its start, as cpu_seconds() gives them
    started: float = field(default_factory=time.monotonic)

    def rtt(self) -> dict[str, Any]:
        def pct(q: int) -> float | None:
            if len(self.rtt_ms) < 2:
                return self.rtt_ms[0] if self.rtt_ms else None
            return round(statistics.quantiles(self.rtt_ms, n=100)[q - 1], 2)

        return {"p50_ms": pct(50), "p99_ms": pct(99), "round_trips": len(self.rtt_ms), "unanswered": self.unanswered}


class Bystanders:
    """Honest pairs, A on node 1 and B on node 2, each pair in its own resumable room: A sends B a message every
    50 ms, B sends it back, A times the round trip. A bystander the server closes is noted, with its code."""

    def __init__(self, ports: list[int]) -> None:
        self.urls = [f"ws://127.0.0.1:{p}/ws" for p in ports]
        self.window = Window()
        self._pending: dict[tuple[int, int], float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._conns: list[ClientConnection] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for k in range(PAIRS):
            a, b = await connect(self.urls[0]), await connect(self.urls[1])
            self._conns += (a, b)
            a_id, b_id = await self._join(a, f"by{k}"), await self._join(b, f"by{k}")
            self._tasks += [
                loop.create_task(self._send(k, a, b_id)),
                loop.create_task(self._read(k, a, "a", b_id)),
                loop.create_task(self._read(k, b, "b", a_id, echo=True)),
            ]

    @staticmethod
    async def _join(ws: ClientConnection, room: str) -> str:
        await ws.send(json.dumps({"type": "join", "room": room, "resumable": True}))
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "welcome":
                return str(msg["peer"])

    async def _send(self, k: int, ws: ClientConnection, to: str) -> None:
        n = 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                n += 1
                self._pending[(k, n)] = time.perf_counter()
                await ws.send(json.dumps({"type": "message", "to": to, "data": {"k": k, "n": n}}))
                await asyncio.sleep(0.05)

    async def _read(self, k: int, ws: ClientConnection, side: str, sender: str, *, echo: bool = False) -> None:
        """A's side times the round trips; B's (``echo``) sends every message back."""
        try:
            while True:
                msg = json.loads(await ws.recv())
                if msg["type"] != "message" or msg.get("from") != sender:
                    continue
                data = msg["data"]
                if echo:
                    await ws.send(json.dumps({"type": "message", "to": sender, "data": data}))
                elif (sent := self._pending.pop((data["k"], data["n"]), None)) is not None:
                    self.window.rtt_ms.append((time.perf_counter() - sent) * 1000)
        except ConnectionClosed as exc:
            self.window.closes.append(f"{side}{k}: {exc.code} {exc.reason}".rstrip())

    def next_window(self) -> Window:
        done, self.window = self.window, Window()
        late = time.perf_counter() - 0.5
        done.unanswered = sum(1 for sent in self._pending.values() if sent < late)
        self._pending.clear()
        return done

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(_close_quietly(ws) for ws in self._conns))


async def _close_quietly(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(3):
            await ws.close()


async def sample(c: Cluster, client: aioredis.Redis, by: Bystanders, stop: asyncio.Event) -> None:
    """Every 0.1 s: Redis used_memory and its largest recent client output buffer, the RSS of every process."""
    used = 0
    while not stop.is_set():
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                info = await client.info("memory", "clients")
                used = int(info["used_memory"])
                buffer = int(info["client_recent_max_output_buffer"])
                by.window.max_output_buffer = max(by.window.max_output_buffer, buffer)
        with contextlib.suppress(OSError, RuntimeError):
            rss = [procstat.rss_kib(pid) for pid in (c.redis_pid, *c.pids)]
            by.window.samples.append((used, rss[0], rss[1], rss[2]))
        await asyncio.sleep(0.1)


#: Whose CPU time a window records, in this order.
CPU = ("redis", "node1", "node2", "bench", "machine")


def cpu_seconds(c: Cluster) -> list[float]:
    """CPU seconds so far of Redis, node 1, node 2, this process (the bystanders), and the machine's busy ones."""
    out = []
    for pid in (c.redis_pid, *c.pids):
        try:
            out.append(procstat.proc_cpu_seconds(pid))
        except OSError:
            out.append(float("nan"))
    return [*out, time.process_time(), procstat.machine_busy_seconds()]


def cores(w: Window, end: list[float]) -> dict[str, float]:
    """Cores used in a window by each of CPU."""
    seconds = time.monotonic() - w.started
    return {k: round((b - a) / seconds, 2) for k, a, b in zip(CPU, w.cpu, end, strict=True)}


async def counts(client: aioredis.Redis) -> dict[str, Any]:
    """What Redis holds of the cluster: rooms, members, sessions in their grace period, kept-message lists."""
    p = "signaling"
    try:
        async with asyncio.timeout(5):
            kept = 0
            async for _ in client.scan_iter(match=f"{p}:k:*", count=1000):
                kept += 1
            return {
                "rooms": await client.hlen(f"{p}:rooms"),
                "peers": await client.scard(f"{p}:peers"),
                "graces": await client.zcard(f"{p}:graces"),
                "kept_lists": kept,
            }
    except Exception as exc:
        return {"error": str(exc)[:200]}


def health(port: int) -> dict[str, Any]:
    try:
        _, body = http_get(port, "/healthz")
        doc = json.loads(body)
        cluster_doc = doc.get("cluster") or {}
        return {
            "connections": doc.get("connections"),
            "rooms": doc.get("rooms"),
            "peers": doc.get("peers"),
            "local_peers": doc.get("local_peers"),
            "redis": cluster_doc.get("redis"),
        }
    except (OSError, ValueError) as exc:
        return {"error": str(exc)[:200]}


def memory(quiet: Window, windows: list[Window]) -> dict[str, Any]:
    """Quiet medians, peaks and the after-window medians; the peak of the sum of the growths (bytes)."""

    def med(w: Window, i: int) -> float:
        return statistics.median(s[i] for s in w.samples) if w.samples else 0.0

    base = [med(quiet, i) for i in range(4)]
    later = [s for w in windows for s in w.samples]
    after = windows[-1]
    scale = [1, 1024, 1024, 1024]  # used_memory is in bytes, RSS in KiB

    def growth(s: tuple[int, int, int, int]) -> float:
        return (s[0] - base[0]) + (s[2] - base[2]) * 1024 + (s[3] - base[3]) * 1024

    return {
        "quiet_mib": [round(b * k / MIB, 1) for b, k in zip(base, scale, strict=True)],
        "peak_mib": [round(max((s[i] for s in later), default=0) * scale[i] / MIB, 1) for i in range(4)],
        "after_mib": [round(med(after, i) * scale[i] / MIB, 1) for i in range(4)],
        "attributable_peak_mib": round(max((growth(s) for s in later), default=0.0) / MIB, 1),
        "attributable_after_mib": round(statistics.median(growth(s) for s in after.samples) / MIB, 1)
        if after.samples
        else 0.0,
    }


def ghost_figures(
    report: dict[str, Any], mem: dict[str, Any], held: dict[str, Any], healths: list[dict[str, Any]], addresses: int
) -> dict[str, Any]:
    """Ghosts made and still held (in their grace period), memory per ghost, and what one address holds once it
    has kept the attack up for a whole grace period: measured when the server held fewer ghosts than were made (a
    cap), else projected from the memory per ghost (10 a second for 30 s from one address; one per address)."""
    made = int(report.get("ghosts", {}).get("done", 0))
    in_grace = held.get("graces")
    if not isinstance(in_grace, int):  # another tree's keys: the cluster's peers (as of the last heartbeat)
        in_grace = max(int(h.get("peers") or 0) for h in healths) - 2 * PAIRS
    per_ghost = mem["attributable_peak_mib"] / made if made else 0.0
    if in_grace < made:
        steady, basis = mem["attributable_after_mib"] / addresses, "measured: the server held fewer than were made"
    else:
        steady, basis = per_ghost * (GHOSTS_PER_S * GRACE if addresses == 1 else 1), "projected"
    return {
        "ghosts_made": made,
        "ghosts_held": in_grace,
        "mib_per_ghost": round(per_ghost, 2),
        "steady_mib_per_address": round(steady, 1),
        "steady_basis": basis,
    }


def next_window(by: Bystanders, c: Cluster) -> tuple[Window, dict[str, float]]:
    """End the current window: it, and the cores used in it."""
    now = cpu_seconds(c)
    done = by.next_window()
    by.window.cpu = now
    return done, cores(done, now)


async def measure(c: Cluster, attack: str, seconds: float) -> dict[str, Any]:
    client = aioredis.Redis(host="127.0.0.1", port=c.redis_port, decode_responses=True)
    by = Bystanders(c.ports)
    await by.start()
    stop = asyncio.Event()
    by.window.cpu = cpu_seconds(c)
    sampler = asyncio.get_running_loop().create_task(sample(c, client, by, stop))
    attacker: asyncio.subprocess.Process | None = None
    try:
        await asyncio.sleep(seconds)
        quiet, quiet_cores = next_window(by, c)
        attacker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.cluster_attacks",
            attack,
            "--port",
            str(c.ports[0]),
            "--port-b",
            str(c.ports[1]),
            "--seconds",
            str(seconds),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        assert attacker.stdin is not None and attacker.stdout is not None
        # The attackers connect and join (at their addresses' connection rate): not the attack yet.
        line = await asyncio.wait_for(attacker.stdout.readline(), 60)
        if line.strip() != b"READY":
            raise RuntimeError(f"the attacker did not get ready: {line!r}")
        setup, _ = next_window(by, c)
        attacker.stdin.write(b"go\n")
        began = time.monotonic()
        out, _ = await asyncio.wait_for(attacker.communicate(), seconds + 90)
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - began)))
        attacked, attacked_cores = next_window(by, c)
        attacked_seconds = time.monotonic() - began
        await asyncio.sleep(SETTLE)
        after, _ = next_window(by, c)
        held = await counts(client)
        healths = [health(p) for p in c.ports]
    finally:
        if attacker is not None and attacker.returncode is None:  # the bench failed mid-attack
            attacker.kill()
            await attacker.wait()
        stop.set()
        sampler.cancel()
        await by.stop()
        await client.aclose()
    lines = out.decode().strip().splitlines()
    report: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": "the attacker printed nothing"}
    mem = memory(quiet, [setup, attacked, after])
    addresses = max(1, int(report.get("addresses", 1)))
    # Busy cores beyond the cluster's, the bystanders' and the attacker's: other sessions on the shared machine.
    for w, used in ((quiet_cores, 0.0), (attacked_cores, float(report.get("cpu_s", 0.0)) / attacked_seconds)):
        w["attacker"] = round(used, 2)
        w["other"] = max(0.0, round(w["machine"] - sum(v for k, v in w.items() if k not in ("machine", "other")), 2))
    row = {
        "attack": attack,
        "attacker": report,
        "rtt": {"quiet": quiet.rtt(), "attacked": attacked.rtt(), "after": after.rtt()},
        "bystanders_closed": setup.closes + attacked.closes + after.closes,
        "closed_in_quiet": quiet.closes,
        "memory": mem,
        "max_output_buffer_mib": round(max(w.max_output_buffer for w in (setup, attacked, after)) / MIB, 1),
        "mib_per_address": round(mem["attributable_peak_mib"] / addresses, 1),
        "cores_quiet": quiet_cores,
        "cores_attacked": attacked_cores,
        "redis_after": held,
        "healthz_after": healths,
        "redis_output_buffer_disconnects": redis_disconnects(c.logs / "redis.log"),
        "node_log": [logged_events(c.logs / f"node{i}.log") for i in (1, 2)],
    }
    if attack.startswith("ghosts"):
        row.update(ghost_figures(report, mem, held, healths, addresses))
    return row


# ------------------------------------------------------------------------------------------------ reporting


def fmt(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


def pair(r: dict[str, Any]) -> str:
    return f"{fmt(r['p50_ms'])}/{fmt(r['p99_ms'])}"


def closed_cell(row: dict[str, Any]) -> str:
    closes = row["bystanders_closed"]
    if not closes:
        return "0"
    codes = Counter(c.split(": ", 1)[1].split(" ", 1)[0] for c in closes)
    return f"{len(closes)}/{2 * PAIRS} (" + ", ".join(f"{n}x {code}" for code, n in codes.most_common()) + ")"


def victim(row: dict[str, Any]) -> bool | None:
    v = row["attacker"].get("victim")
    return None if v is None else v.get("resumed")


def targets(row: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    p99 = row["rtt"]["attacked"]["p99_ms"]
    closes = len(row["bystanders_closed"])
    out: list[tuple[str, bool | None, str]] = [
        ("no bystander closed", closes == 0, str(closes)),
        (f"honest p99 < {TARGET_P99_MS:g} ms", p99 is not None and p99 < TARGET_P99_MS, f"{fmt(p99)} ms"),
        (
            f"<= {TARGET_MIB_PER_ADDRESS:g} MiB per address",
            row["mib_per_address"] <= TARGET_MIB_PER_ADDRESS,
            f"{row['mib_per_address']:g} MiB",
        ),
    ]
    resumed = victim(row)
    if row["attack"] == "resume-guess":
        out.append(("the victim resumes", resumed, {True: "yes", False: "no", None: "not measured"}[resumed]))
    return out


def print_row(row: dict[str, Any]) -> None:
    r, m = row["attacker"], row["memory"]
    print(
        f"{row['attack']:<14} addresses {r.get('addresses')} conns {r.get('opened')}  "
        f"rtt p50/p99 {pair(row['rtt']['quiet'])} -> {pair(row['rtt']['attacked'])} -> {pair(row['rtt']['after'])} ms  "
        f"closed {closed_cell(row)}  redis used {m['quiet_mib'][0]} -> {m['peak_mib'][0]} ({m['after_mib'][0]}) MiB  "
        f"node rss {m['quiet_mib'][2]}/{m['quiet_mib'][3]} -> {m['peak_mib'][2]}/{m['peak_mib'][3]} MiB  "
        f"per address {row['mib_per_address']} MiB",
        flush=True,
    )
    detail = {k: v for k, v in r.items() if k not in ("attack",)}
    print(f"    attacker: {json.dumps(detail)}", flush=True)
    q, a = row["cores_quiet"], row["cores_attacked"]
    print("    cores quiet -> attacked: " + ", ".join(f"{k} {q[k]:g} -> {a[k]:g}" for k in q), flush=True)
    print(f"    left in redis {row['redis_after']}; healthz {row['healthz_after']}", flush=True)
    print(
        f"    redis: largest client output buffer {row['max_output_buffer_mib']} MiB, clients closed for their "
        f"output buffer limit: {row['redis_output_buffer_disconnects']}",
        flush=True,
    )
    if any(row["node_log"]):
        print(f"    node logs (warning+): {row['node_log']}", flush=True)
    if row["bystanders_closed"]:
        print(f"    closed: {row['bystanders_closed']}", flush=True)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = common.table_head(
        "| attack | addresses (conns) | honest p50/p99 ms quiet -> attacked -> after | round trips (unanswered) "
        "| bystanders closed | Redis used_memory MiB quiet -> peak (after) | node 1/2 RSS MiB quiet -> peak (after) "
        "| Redis cores | MiB per address peak (after) | left: rooms, peers, in grace | other load, cores |"
    )
    for row in rows:
        r, m = row["attacker"], row["memory"]
        addresses = max(1, int(r.get("addresses", 1)))
        after = round(m["attributable_after_mib"] / addresses, 1)
        held = row["redis_after"]
        left = f"{held.get('rooms')}, {held.get('peers')}, {held.get('graces')}" if "rooms" in held else "?"
        lines.append(
            f"| {row['attack']} | {r.get('addresses')} ({r.get('opened')}) "
            f"| {pair(row['rtt']['quiet'])} -> {pair(row['rtt']['attacked'])} -> {pair(row['rtt']['after'])} "
            f"| {row['rtt']['attacked']['round_trips']} ({row['rtt']['attacked']['unanswered']}) "
            f"| {closed_cell(row)} | {m['quiet_mib'][0]:g} -> {m['peak_mib'][0]:g} ({m['after_mib'][0]:g}) "
            f"| {m['quiet_mib'][2]:g}/{m['quiet_mib'][3]:g} -> {m['peak_mib'][2]:g}/{m['peak_mib'][3]:g} "
            f"({m['after_mib'][2]:g}/{m['after_mib'][3]:g}) "
            f"| {row['cores_quiet']['redis']:g} -> {row['cores_attacked']['redis']:g} "
            f"| {row['mib_per_address']:g} ({after:g}) | {left} "
            f"| {row['cores_quiet']['other']:g}, {row['cores_attacked']['other']:g} |"
        )
    lines += ["", *common.table_head("| attack | target | figure | met |")]
    for row in rows:
        for what, ok, figure in targets(row):
            lines.append(f"| {row['attack']} | {what} | {figure} | {'-' if ok is None else 'pass' if ok else 'FAIL'} |")
    notes = []
    for row in rows:
        if "steady_mib_per_address" in row:
            notes.append(
                f"- {row['attack']}: {row['ghosts_made']} ghosts made, {row['ghosts_held']} held after it, "
                f"{row['mib_per_ghost']:g} MiB per ghost made; kept up for the {GRACE:g} s grace, one address holds "
                f"~{row['steady_mib_per_address']:g} MiB ({row['steady_basis']})"
            )
        if row["attack"] == "resume-guess":
            c, v = row["attacker"].get("control", {}), row["attacker"].get("victim", {})
            notes.append(
                f"- resume-guess: control (no guesses) resumed: {c.get('resumed')}; after 12 made-up tokens to each "
                f"node from its address: {v.get('resumed')} (guesses answered: {v.get('guesses')})"
            )
    return "\n".join(lines + (["", *notes] if notes else []))


def run_attack(tree: Path, attack: str, seconds: float) -> dict[str, Any]:
    # Other sessions share the machine: start on a quiet one if it comes within 10 s (the load is reported).
    procstat.wait_quiet(0.5, 10.0, sample=0.5)
    with cluster(tree) as c:
        row = asyncio.run(measure(c, attack, seconds))
    print_row(row)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--attacks", default=",".join(NAMES), help="comma-separated, from: " + ", ".join(NAMES))
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the quiet and the attacked window")
    parser.add_argument("--quick", action="store_true", help="4 s windows")
    parser.add_argument("--tree", type=Path, default=REPO, help="source tree the nodes run from (default: this one)")
    parser.add_argument("--json", help="write the rows here")
    args: argparse.Namespace = parser.parse_args(argv)
    attacks = common.chosen(parser, args.attacks, NAMES)
    seconds = 4.0 if args.quick else args.seconds
    tree = args.tree.resolve()
    where = code_under_test(tree)
    print(f"nodes run {where} ({sys.executable}); windows of {seconds:g} s", flush=True)
    began = time.monotonic()
    rows = [run_attack(tree, attack, seconds) for attack in attacks]
    print(f"\n{len(rows)} attacks in {time.monotonic() - began:.0f} s; code under test: {where}\n")
    print(markdown(rows))
    if args.json:
        common.write_json(args.json, {"tree": str(tree), "code": where, "seconds": seconds, "rows": rows}, 2)


if __name__ == "__main__":
    main()

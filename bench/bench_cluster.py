"""Cross-node relay: each pair split across two nodes on one Redis, against one node, same load, same run.

Run: python -m bench.bench_cluster [--runs 3] [--pairs 50] [--window 20] [--rate 5000] [--duration 10]
                                   [--quick] [--json OUT.json]

The load is bench_relay's (bench/relay_load.py: 50 pairs trickling 250-byte ``candidate`` messages to each
other, a picows client pinned to CPU 1); the servers are ours on uvloop with production settings and the policy
limits lifted as in bench_relay. Three set-ups, interleaved run by run:

- ``one node``: ``signaling serve`` in memory, no Redis: the single-process figures;
- ``one node + redis``: cluster mode (``--redis-url``), both peers of every pair on the same node: what the
  cluster costs when nothing crosses (membership in Redis, the relay local);
- ``two nodes``: cluster mode, A of each pair on node 1 and B on node 2: every message crosses through Redis
  (published to the other node's channel, in batches).

Every server-side process (the nodes and redis-server) is pinned to CPU 0, so each set-up has the same one core
and throughput compares what a message costs the server side in all; ``µs/msg`` is split per process (node 1,
node 2, redis), the figure that tells what a bigger cluster, one core per process, could carry. ``--no-pin``
lets the scheduler place every process instead (the deployment case: no process waits for another's core).
For each: the saturated throughput (a window of 20 undelivered messages per sender) and its p99, then p50/p99
at a fixed offered load that every set-up sustains (``--rate``, 20,000 msgs/s by default, as in bench_relay).
Targets (issue 11): two nodes' p99 at the fixed load within 2x one node's, and their throughput at least 0.5x.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from bench import common
from bench.bench_relay import LIFTED_LIMITS, _die_with_parent, run_load
from bench.procstat import free_port, pinned, port_ready, started, wait_quiet

SETUPS = ("one node", "one node + redis", "two nodes")
TARGET_P99 = 2.0
TARGET_THROUGHPUT = 0.5


def node_command(port: int, redis_url: str | None, extra: Sequence[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1", "--port", str(port), "--uvloop"]
    cmd += ["--rate-limit", "1000000", "--rate-burst", "1000000", "--room-max-peers", "8", "--max-rooms", "100000"]
    cmd += LIFTED_LIMITS
    if redis_url is not None:
        cmd += ["--redis-url", redis_url]
    return [*cmd, *extra]


@contextlib.contextmanager
def server_side(
    setup: str, cpu: int | None, extra: Sequence[str] = ()
) -> Iterator[tuple[list[int], list[int], list[str]]]:
    """Start a set-up's processes on ``cpu`` (the nodes with ``extra`` arguments); yield (ports the clients use,
    pids, their names)."""
    with contextlib.ExitStack() as stack:
        pids: list[int] = []
        names: list[str] = []
        redis_url = None
        if setup != "one node":
            redis_port = free_port()
            cmd = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
            cmd += ["no", "--loglevel", "warning"]
            pid, _ = stack.enter_context(
                started(pinned(cmd, cpu), "redis-server", port_ready(redis_port), preexec_fn=_die_with_parent)
            )
            pids.append(pid)
            names.append("redis")
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        ports = []
        for i in range(2 if setup == "two nodes" else 1):
            port = free_port()
            pid, _ = stack.enter_context(
                started(
                    pinned(node_command(port, redis_url, extra), cpu),
                    "node",
                    port_ready(port),
                    preexec_fn=_die_with_parent,
                )
            )
            pids.append(pid)
            names.append(f"node {i + 1}")
            ports.append(port)
        yield ports, pids, names


def measure(mode: str, ports: list[int], pids: list[int], opts: argparse.Namespace, prefix: str) -> dict[str, Any]:
    args = [mode, "--port", str(ports[0]), "--port-b", str(ports[-1]), "--pairs", str(opts.pairs)]
    args += ["--warmup", str(opts.warmup)]
    for pid in pids:
        args += ["--server-pid", str(pid)]
    if mode == "saturate":
        args += ["--window", str(opts.window), "--duration", str(opts.duration)]
        wall = opts.warmup + opts.duration
    else:
        args += ["--rate", str(opts.rate), "--duration", str(opts.rate_duration)]
        wall = opts.warmup + opts.rate_duration

    def attempt(i: int) -> dict[str, Any]:
        wait_quiet(opts.quiet_limit, opts.quiet_wait, sample=0.5)
        res = run_load(
            [*args, "--room-prefix", f"{prefix}a{i}", "--max-seconds", str(wall + 60)], opts.client_cpu, wall + 70
        )
        if res["excess_cores"] > opts.noise_limit:
            print(f"  noisy ({res['excess_cores']:.2f} excess cores), again", file=sys.stderr, flush=True)
        return res

    return common.quietest(attempt, opts.attempts, opts.noise_limit)[0]


def run_setup(setup: str, opts: argparse.Namespace, run: int) -> dict[str, Any]:
    with server_side(setup, opts.server_cpu) as (ports, pids, names):
        prefix = f"r{run}{SETUPS.index(setup)}"
        sat = measure("saturate", ports, pids, opts, prefix + "s")
        rate = measure("rate", ports, pids, opts, prefix + "r")
    each = {name: sat["srv_us_per_msg_each"][str(pid)] for name, pid in zip(names, pids, strict=True)}
    print(
        f"  {setup}: {sat['msgs_per_s']:,.0f} msgs/s, p99 {sat['p99_ms']:.1f} ms, {sat['srv_us_per_msg']:.1f} µs/msg "
        f"({', '.join(f'{k} {v:.1f}' for k, v in each.items())}); @{opts.rate:g}/s p50 {rate['p50_ms']:.2f} "
        f"p99 {rate['p99_ms']:.2f} ms",
        file=sys.stderr,
        flush=True,
    )
    return {"saturate": sat, "rate": rate, "each": each}


def print_tables(results: dict[str, list[dict[str, Any]]], opts: argparse.Namespace) -> None:
    runs = max(len(v) for v in results.values())
    where = "server side on one core" if opts.server_cpu is not None else "no pinning"
    print(
        f"\nCross-node relay, {opts.pairs} pairs, window {opts.window}, {opts.duration:g} s (saturation); "
        f"{opts.rate:g} msgs/s offered, {opts.rate_duration:g} s (fixed rate); {where}; "
        f"median of {runs} (min-max)\n"
    )
    head = "| set-up | delivered msgs/s | p99 ms | @rate p50 ms | @rate p99 ms | srv µs/msg | per process µs/msg |"
    print(*common.table_head(head), sep="\n")
    span = common.median_range
    for setup, rs in results.items():
        sat = [r["saturate"] for r in rs]
        rate = [r["rate"] for r in rs]
        names = list(rs[0]["each"])
        parts = ", ".join(f"{n} {common.median([r['each'][n] for r in rs]):.1f}" for n in names)
        print(
            f"| {setup} | {span([s['msgs_per_s'] for s in sat], ',.0f')} | {span([s['p99_ms'] for s in sat], '.1f')} "
            f"| {span([r['p50_ms'] for r in rate], '.2f')} | {span([r['p99_ms'] for r in rate], '.2f')} "
            f"| {span([s['srv_us_per_msg'] for s in sat], '.1f')} | {parts} |"
        )
    one, two = results.get("one node"), results.get("two nodes")
    if one and two:
        throughput = common.ratio(
            [r["saturate"]["msgs_per_s"] for r in two], [r["saturate"]["msgs_per_s"] for r in one]
        )
        p99 = common.ratio([r["rate"]["p99_ms"] for r in two], [r["rate"]["p99_ms"] for r in one])
        print()
        print(*common.table_head("| two nodes vs one node | ratio | target |"), sep="\n")
        met = "met" if throughput >= TARGET_THROUGHPUT else "MISSED"
        print(f"| throughput | {throughput:.2f}x | >= {TARGET_THROUGHPUT:g}: {met} |")
        met = "met" if p99 <= TARGET_P99 else "MISSED"
        print(f"| p99 at {opts.rate:g} msgs/s | {p99:.2f}x | <= {TARGET_P99:g}: {met} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    common.add_runs(parser)
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated, of: " + ", ".join(SETUPS))
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20_000.0, help="offered msgs/s of the fixed-rate test")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate-duration", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="1 run, 3 s + 2 s windows, 1 attempt")
    common.add_cpu_pinning(parser)
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place every process")
    common.add_retry_options(parser, attempts=3)
    parser.add_argument("--quiet-limit", type=float, default=0.3)
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--json", metavar="PATH", help="write every result as JSON")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.runs, opts.duration, opts.rate_duration, opts.attempts = 1, 3.0, 2.0, 1
    if opts.no_pin:
        opts.server_cpu = opts.client_cpu = None
    setups = [s.strip() for s in opts.setups.split(",") if s.strip()]
    unknown = set(setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown set-ups: {', '.join(sorted(unknown))}")
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in setups}
    for run in range(opts.runs):
        for setup in setups:
            print(f"run {run + 1}/{opts.runs}: {setup}", file=sys.stderr, flush=True)
            results[setup].append(run_setup(setup, opts, run))
    print_tables(results, opts)
    if opts.json:
        common.write_json(opts.json, {"options": vars(opts), "results": results}, indent=1)


if __name__ == "__main__":
    main()

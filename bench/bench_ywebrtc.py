"""y-webrtc publish fan-out and idle memory: our /y-webrtc endpoint against y-webrtc's own bin/server.js.

Run: python -m bench.bench_ywebrtc [--servers ours,stock] [--subscribers 2,8] [--conns 64] [--window 4]
                                   [--idle-conns 2000] [--runs 3] [--duration 5] [--quick] [--json OUT.jsonl]

Servers, each started fresh per measurement, pinned to CPU 0 (``taskset -c 0``):

- ``ours``: ``python -m signaling serve`` (uvloop), the endpoint at /y-webrtc, its checks on (parse, topic
  limits, rate limits at values this load never reaches: bench_relay.LIFTED_LIMITS), logging at info to a file;
- ``stock``: ``node bin/server.js`` of the y-webrtc package (10.3.0, with ws 8, from
  tests/interop/ywebrtc/package-lock.json: ``make test-deps`` or tests/interop/ywebrtc/install.sh installs it),
  run from bench/ with ``PORT`` set. One process; its CPU counts every thread.

The load generator (bench/ywebrtc_load.py, picows on uvloop, pinned to CPU 1):

- fan-out: ``--conns`` clients, topics of S subscribers (S in ``--subscribers``: 2, a document with one
  collaborator; 8, a busy one), every client publishing ~250-byte messages to its topic with ``--window`` of its
  own in flight; deliveries/s (each publish is S deliveries, the sender's own included), latency p50/p99 per
  delivery, and the server's CPU µs per delivery over the window;
- idle: ``--idle-conns`` connections, each subscribed to a topic of two, held 2 s: server RSS growth per
  connection.

On 2 cores the load generator can cap throughput (it parses every delivery); the server CPU per delivery is the
figure that compares the servers whatever the client. The machine is shared: a fan-out measurement with more
than ``--noise-limit`` busy cores beyond server and client is retried (``--attempts`` in all), the quietest kept.
Runs are interleaved (run 1 of every server, then run 2); the tables give medians with min-max. Traffic goes to
127.0.0.1 only; every server is stopped after its run.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.bench_relay import LIFTED_LIMITS
from bench.procstat import free_port, pinned, port_ready, run_json, server_env, started

BENCH_DIR = Path(__file__).resolve().parent
STOCK_SERVER = BENCH_DIR.parent / "tests" / "interop" / "ywebrtc" / "node_modules" / "y-webrtc" / "bin" / "server.js"
SERVERS = ("ours", "stock")


def server_command(name: str, port: int) -> list[str]:
    if name == "stock":
        return ["node", str(STOCK_SERVER)]
    return [
        sys.executable,
        "-m",
        "signaling",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--rate-limit",
        "1000000",
        "--rate-burst",
        "1000000",
        "--max-rooms",
        "100000",
        *LIFTED_LIMITS,
        "--uvloop",
    ]


def measure(name: str, client_args: list[str], opts: Any) -> dict[str, Any]:
    port = free_port()
    env = server_env() | {"PORT": str(port)}
    cmd = pinned(server_command(name, port), opts.server_cpu)
    with started(cmd, name, port_ready(port), env=env, cwd=BENCH_DIR) as (pid, _):
        url = f"ws://127.0.0.1:{port}" + ("/y-webrtc" if name == "ours" else "/")
        args = [sys.executable, "-m", "bench.ywebrtc_load", *client_args, "--url", url, "--server-pid", str(pid)]
        result = run_json(pinned(args, opts.client_cpu), 180, f"load against {name}", cwd=BENCH_DIR.parent)
    if result["errors"]:
        raise RuntimeError(f"{name}: {result['errors']} errors, first: {result.get('first_error')}")
    return result


def report(rows: list[dict[str, Any]], servers: list[str], sizes: list[int], idle_conns: int) -> str:
    def cells(kind: str, name: str, key: str, size: int | None = None) -> list[float]:
        return [r[key] for r in rows if r["kind"] == kind and r["server"] == name and (size is None or r["S"] == size)]

    out = common.table_head(
        "| topic | server | deliveries/s | publishes/s | p50 ms | p99 ms | srv µs/delivery | srv cores | "
        "÷ stock: throughput | ÷ stock: work per CPU s |"
    )
    for size in sizes:
        for name in servers:
            line = f"| {size} subscribers | {name} | " + " | ".join(
                common.median_range(cells("fanout", name, key, size), spec)
                for key, spec in (
                    ("msgs_per_s", ",.0f"),
                    ("publishes_per_s", ",.0f"),
                    ("p50_ms", ".2f"),
                    ("p99_ms", ".2f"),
                    ("srv_us_per_msg", ".1f"),
                    ("srv_cores", ".2f"),
                )
            )
            if name != "stock" and "stock" in servers:
                line += " | " + common.ratio_cell(
                    cells("fanout", name, "msgs_per_s", size), cells("fanout", "stock", "msgs_per_s", size)
                )
                line += " | " + common.ratio_cell(
                    cells("fanout", "stock", "srv_us_per_msg", size), cells("fanout", name, "srv_us_per_msg", size)
                )
            else:
                line += " | | "
            out.append(line + " |")
    if idle_conns:
        out += [
            "",
            *common.table_head(f"| server | KiB per idle subscribed connection @ {idle_conns:,} | base RSS MiB |"),
        ]
        for name in servers:
            kib = common.median_range(cells("idle", name, "kib_per_conn"), ".1f")
            base = common.median_range([v / 1024 for v in cells("idle", name, "rss0_kib")], ".0f")
            out.append(f"| {name} | {kib} | {base} |")
    return "\n".join(out)


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--subscribers", default="2,8", help="comma-separated topic sizes")
    parser.add_argument("--conns", type=int, default=64, help="fan-out clients (a multiple of every topic size)")
    parser.add_argument("--window", type=int, default=4, help="publishes in flight per client")
    parser.add_argument("--idle-conns", type=int, default=2000, help="0: no idle measurement")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="1 run, 2 s windows, 500 idle connections")
    common.add_runs(parser)
    common.add_cpu_pinning(parser)
    common.add_retry_options(parser, 3)
    common.add_json_lines(parser)
    opts = parser.parse_args()
    servers = common.chosen(parser, opts.servers, SERVERS)
    sizes = [int(x) for x in opts.subscribers.split(",") if x]
    if opts.quick:
        opts.runs, opts.duration, opts.idle_conns = 1, 2.0, min(opts.idle_conns, 500)
    if any(opts.conns % s for s in sizes):
        parser.error("--conns must be a multiple of every topic size")
    if "stock" in servers and not STOCK_SERVER.is_file():
        parser.error(f"{STOCK_SERVER} is missing: run tests/interop/ywebrtc/install.sh (make test-deps)")
    if opts.idle_conns:
        from bench.servers import raise_nofile_limit

        raise_nofile_limit(opts.idle_conns + 1024)

    rows: list[dict[str, Any]] = []
    begun = time.monotonic()
    for run in range(1, opts.runs + 1):
        for size in sizes:
            for name in servers:
                client = ["fanout", "--conns", str(opts.conns), "--subscribers", str(size)]
                client += ["--window", str(opts.window), "--duration", str(opts.duration)]

                def attempt(_: int, name: str = name, client: list[str] = client) -> dict[str, Any]:
                    return measure(name, client, opts)

                r, _ = common.quietest(attempt, opts.attempts, opts.noise_limit)
                r |= {"kind": "fanout", "server": name, "S": size, "run": run}
                rows.append(r)
                print(
                    f"  run {run} {name} S={size}: {r['msgs_per_s']:,.0f} deliveries/s, p99 {r['p99_ms']:.2f} ms, "
                    f"{r['srv_us_per_msg']:.1f} srv µs/delivery ({r['srv_cores']:.2f} cores)"
                    + (" noisy" if r["noisy"] else ""),
                    file=sys.stderr,
                    flush=True,
                )
                if opts.json:
                    common.append_json_line(opts.json, r)
        if opts.idle_conns:
            for name in servers:
                r = measure(name, ["idle", "--conns", str(opts.idle_conns)], opts)
                r |= {"kind": "idle", "server": name, "run": run}
                rows.append(r)
                print(f"  run {run} {name} idle: {r['kib_per_conn']:.1f} KiB/conn", file=sys.stderr, flush=True)
                if opts.json:
                    common.append_json_line(opts.json, r)
    print(
        f"\ny-webrtc fan-out, {opts.conns} clients, {opts.window} publishes in flight each, ~250 B; "
        f"median (min-max) of {opts.runs} runs; {time.monotonic() - begun:.0f} s in all; pid {os.getpid()}\n"
    )
    print(report(rows, servers, sizes, opts.idle_conns))


if __name__ == "__main__":
    main()

"""PeerJS benchmark: our server's PeerJS endpoint against the original PeerJS server (npm ``peer``, run with node),
same load, same run.

Run: python -m bench.bench_peerjs [--servers ours,peer] [--runs 3] [--pairs 50] [--window 20] [--warmup 1]
                                  [--duration 10] [--idle 2000] [--quick] [--json OUT.json]

Method (as bench_relay.py's saturation, shared/perf-anchors.md section 3): for every run and every server, the
server starts pinned to CPU 0 (``taskset -c 0``) and the load generator (bench/peerjs_load.py: picows on uvloop,
orjson) runs in its own process pinned to CPU 1. 50 pairs = 100 PeerJS sockets, each sending 250-byte CANDIDATE
messages to its partner with a window of 20 undelivered; after a warm-up: delivered msgs/s, send -> partner
receive p50/p99, and the server's CPU per message from /proc/PID/stat. Then, on a fresh server, ``--idle``
sockets held open (each has had its OPEN): the server's RSS growth per connection.

Servers:

- ``ours``: ``python -m signaling serve`` on uvloop with bench_relay.py's lifted per-connection limits (every
  check still runs, at values the load never reaches), PeerJS on its defaults (``/peerjs``, key ``peerjs``);
- ``peer``: ``node tests/interop/peerjs/node_modules/peer/dist/bin/peerjs.js --path /peerjs``, the original, as
  pinned by tests/interop/peerjs/package-lock.json (scripts/install-peerjs.sh installs it); its concurrent
  limit raised above the idle count. One process; its CPU counts every thread.

The machine is shared: a measurement whose whole-machine busy cores exceed server + client cores by more than
``--noise-limit`` is retried (``--attempts``); runs are interleaved; the table gives the median with its
min-max range and the ratios ours / peer. Every server is stopped after its run; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from bench import common
from bench.bench_relay import LIFTED_LIMITS, _die_with_parent
from bench.procstat import free_port, pinned, port_ready, run_json, server_env, started, wait_quiet

SERVERS = ("ours", "peer")
PEER_BIN = Path(__file__).resolve().parents[1] / "tests/interop/peerjs/node_modules/peer/dist/bin/peerjs.js"


def server_command(name: str, port: int, idle: int) -> list[str]:
    if name == "peer":
        return [
            "node",
            str(PEER_BIN),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--path",
            "/peerjs",
            "--concurrent_limit",
            str(max(5000, 2 * idle)),
        ]
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
        "--peerjs-max-peers",
        str(max(5000, 2 * idle)),
        "--log-level",
        "warning",
        *LIFTED_LIMITS,
        "--uvloop",
    ]


def measure(name: str, mode: list[str], opts: argparse.Namespace, run_id: str, wall: float) -> dict[str, Any]:
    """One measurement on a fresh server, retried while the machine is noisy (saturation only)."""

    def attempt(i: int) -> dict[str, Any]:
        wait_quiet(opts.quiet_limit, opts.quiet_wait, sample=0.5)
        port = free_port()
        cmd = pinned(server_command(name, port, opts.idle), opts.server_cpu)
        with started(cmd, name, port_ready(port), preexec_fn=_die_with_parent, env=server_env()) as (pid, _):
            load = [
                sys.executable,
                "-m",
                "bench.peerjs_load",
                *mode,
                "--port",
                str(port),
                "--server-pid",
                str(pid),
                "--run-id",
                f"{run_id}a{i}",
                "--max-seconds",
                str(wall + 60),
            ]
            res = run_json(pinned(load, opts.client_cpu), wall + 70, "load generator", preexec_fn=_die_with_parent)
        res.setdefault("excess_cores", 0.0)
        res["attempts"] = i
        return res

    attempts = opts.attempts if mode[0] == "saturate" else 1
    return common.quietest(attempt, attempts, opts.noise_limit)[0]


def report(rows: dict[str, list[dict[str, Any]]], servers: list[str]) -> str:
    def col(name: str, key: str) -> list[float]:
        return [r[key] for r in rows[name]]

    out = common.table_head(
        "| server | msgs/s | p50 ms | p99 ms | srv µs/msg | srv cores | KiB/idle conn | noisy | errors |"
    )
    for name in servers:
        runs = rows[name]
        out.append(
            f"| {name} | {common.median_range(col(name, 'msgs_per_s'), ',.0f')} | "
            f"{common.median_range(col(name, 'p50_ms'), '.2f')} | {common.median_range(col(name, 'p99_ms'), '.2f')} | "
            f"{common.median_range(col(name, 'srv_us_per_msg'), '.1f')} | "
            f"{common.median_range(col(name, 'srv_cores'), '.2f')} | "
            f"{common.median_range(col(name, 'kib_per_conn'), '.1f')} | "
            f"{sum(int(r['noisy']) for r in runs)} | {sum(int(r['errors']) for r in runs)} |"
        )
    if "ours" in rows and "peer" in rows:
        out.append("")
        out.append(
            f"ours / peer: throughput {common.ratio_cell(col('ours', 'msgs_per_s'), col('peer', 'msgs_per_s'))}, "
            f"work per CPU second {common.ratio_cell(col('peer', 'srv_us_per_msg'), col('ours', 'srv_us_per_msg'))}, "
            f"p99 {common.ratio_cell(col('ours', 'p99_ms'), col('peer', 'p99_ms'))}, "
            f"memory per idle connection {common.ratio_cell(col('ours', 'kib_per_conn'), col('peer', 'kib_per_conn'))}"
        )
    return "\n".join(out)


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--servers", default=",".join(SERVERS))
    common.add_runs(parser)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=2000, help="idle PeerJS sockets for the memory figure")
    parser.add_argument("--quick", action="store_true", help="1 run, 3 s windows, 1,000 idle sockets")
    parser.add_argument("--json", help="write the rows and the table here")
    common.add_cpu_pinning(parser)
    common.add_retry_options(parser, attempts=3)
    parser.add_argument("--quiet-limit", type=float, default=0.3, help="busy cores to wait below before a run")
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="longest wait for a quiet machine, s")
    opts = parser.parse_args()
    servers = common.chosen(parser, opts.servers, SERVERS)
    if opts.quick:
        opts.runs, opts.duration, opts.idle = 1, 3.0, 1000
    if "peer" in servers and (shutil.which("node") is None or not PEER_BIN.is_file()):
        parser.error(f"the original server needs node and {PEER_BIN}: run scripts/install-peerjs.sh")
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for run in range(opts.runs):
        for name in servers:
            print(f"run {run + 1}/{opts.runs}: {name}", file=sys.stderr, flush=True)
            sat = measure(
                name,
                [
                    "saturate",
                    "--pairs",
                    str(opts.pairs),
                    "--window",
                    str(opts.window),
                    "--warmup",
                    str(opts.warmup),
                    "--duration",
                    str(opts.duration),
                ],
                opts,
                f"s{run}",
                opts.warmup + opts.duration,
            )
            idle = measure(name, ["idle", "--count", str(opts.idle)], opts, f"i{run}", 30.0)
            sat["noisy"] = sat["excess_cores"] > opts.noise_limit
            rows[name].append({**sat, "kib_per_conn": idle["kib_per_conn"], "errors": sat["errors"] + idle["errors"]})
    table = report(rows, servers)
    print(table)
    if opts.json:
        common.write_json(opts.json, {"rows": rows, "table": table}, 1)


if __name__ == "__main__":
    main()

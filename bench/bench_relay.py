"""Relay benchmark: our signaling server against minimal websockets, picows and Node.js ws relays, same load, same run.

Run: python -m bench.bench_relay [--servers ours:asyncio,ours:uvloop,websockets:uvloop,node-ws:node,...] [--runs 3]
                                 [--pairs 50] [--window 20] [--rate 20000] [--warmup 1] [--duration 10]
                                 [--rate-duration 5] [--rate-tick 0.001] [--quick] [--json OUT.json]
                                 [--variant NAME=DIR] [--from-json OUT.json]

Method (../shared/perf-anchors.md, section 3): for every run and every server, the server starts pinned to CPU
0 (``taskset -c 0``); the load generator (bench/relay_load.py: picows client on uvloop, callback-style, orjson)
runs in its own process pinned to CPU 1. 50 pairs = 100 connections, each pair in its own room, each client
trickling 250-byte ``candidate`` messages to its partner:

- saturation: a window of 20 undelivered messages per sender (2,000 in flight), 1 s warm-up, then delivered
  msgs/s and send -> partner-receive latency p50/p99 over a fixed window; the server's CPU from its own
  /proc/PID/stat over that window ("srv µs/msg" = server CPU seconds ÷ delivered messages);
- fixed rate: an open-loop paced load of ``--rate`` msgs/s in all (20,000 by default), p50/p99 latency there.

Servers:

- ``ours``: ``python -m signaling serve --rate-limit 1000000 --rate-burst 1000000 --room-max-peers 8
  --max-rooms 100000`` with ``--no-uvloop`` (asyncio) or ``--uvloop``; production settings otherwise (every
  message validated by the pydantic models, logging at info as JSON lines to a file);
- ``websockets``, ``websockets-orjson``, ``picows``: bench/relay_baselines.py;
- ``node-ws`` (loop ``node``, its only one): bench/node_relay/relay.mjs, Node.js with the ``ws`` package pinned
  by bench/node_relay/package-lock.json, which bench/node_ws.py installs into .tools/node-relay (``npm ci``) the
  first time it is asked for. One process, pinned like the others; its CPU from /proc/PID/stat counts every
  thread (V8's and libuv's helpers too). Left out of the default servers, with a note, when ``node`` or ``npm``
  is not on PATH.

The machine is shared: a measurement whose whole-machine busy cores exceed server + client cores by more than
``--noise-limit`` (0.2) is retried (``--attempts`` in all); when every attempt is noisy the quietest is kept and
counted in the "noisy" column. Runs are interleaved (run 1 of every server, then run 2, ...); the table shows
the median with the min-max range, and the ratios of ours to each baseline on the same event loop (to node-ws
from every loop of ours): throughput, and work per CPU second (the baseline's srv µs/msg over ours).
Every server is stopped after its run (and dies with this process); traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from bench import common, node_ws
from bench.procstat import pinned, run_json, started, wait_quiet

LIBS = ("ours", "websockets", "websockets-orjson", "picows", "node-ws")
#: Baselines that are not Python run on their own event loop, the only value their LOOP may take.
OWN_LOOP = {"node-ws": "node"}
DEFAULT_SERVERS = tuple(f"{lib}:{loop}" for loop in common.LOOPS for lib in LIBS if lib not in OWN_LOOP) + tuple(
    f"{lib}:{loop}" for lib, loop in OWN_LOOP.items()
)
#: Issue 5's targets: ours / websockets and ours / picows relay throughput.
TARGET_VS_WEBSOCKETS = 1.5
TARGET_VS_PICOWS = 1.0


#: Settings that lift ``ours``' per-connection and per-address limits far above what the benchmark load reaches.
LIFTED_LIMITS = (
    "--rate-limit-bytes",
    "1000000000",
    "--rate-burst-bytes",
    "1000000000",
    "--frame-rate",
    "1000000000",
    "--frame-burst",
    "1000000000",
    "--max-connections-per-ip",
    "0",
    "--connection-rate-per-ip",
    "1000000",
    "--connection-burst-per-ip",
    "1000000",
    "--max-handshakes-per-ip",
    "0",
)


def loops_of(lib: str) -> tuple[str, ...]:
    """The LOOP values a server LIB runs on."""
    return (OWN_LOOP[lib],) if lib in OWN_LOOP else common.LOOPS


def server_command(lib: str, loop: str, port: int, max_seconds: float) -> list[str]:
    if lib == "node-ws":
        return node_ws.command(port, max_seconds)
    if lib == "ours":
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
            "--room-max-peers",
            "8",
            "--max-rooms",
            "100000",
            # The baselines have no policy limits: ours keeps its checks (so their cost is measured) at values
            # this load never reaches.
            *LIFTED_LIMITS,
            "--uvloop" if loop == "uvloop" else "--no-uvloop",
        ]
    return [
        sys.executable,
        "-m",
        "bench.relay_baselines",
        "--lib",
        lib,
        "--loop",
        loop,
        "--port",
        str(port),
        "--max-seconds",
        str(max_seconds),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG survives taskset's exec: a server never outlives this bench, even if it is killed.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@contextlib.contextmanager
def spawn(
    lib: str, loop: str, cpu: int | None, max_seconds: float, cwd: str | None = None
) -> Iterator[tuple[int, int]]:
    """Start a server pinned to ``cpu``; yield (pid, port) once it accepts TCP; SIGTERM (then SIGKILL) after.

    ``cwd``: run ``ours`` from another checkout (``python -m`` imports ``signaling`` from there first).
    """
    port = free_port()

    def ready(pid: int, out: IO[str]) -> int | None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return port
        return None

    cmd = pinned(server_command(lib, loop, port, max_seconds), cpu)
    with started(cmd, f"{lib}:{loop}", ready, preexec_fn=_die_with_parent, cwd=cwd) as (pid, port):
        yield pid, port


def run_load(args: Sequence[str], cpu: int | None, timeout: float) -> dict[str, Any]:
    cmd = pinned([sys.executable, "-m", "bench.relay_load", *args], cpu)
    return run_json(cmd, timeout, "load generator", preexec_fn=_die_with_parent)


def measure(mode: str, port: int, pid: int, opts: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """One measurement, retried while the machine is noisy; the quietest attempt if all are."""
    shared = ["--port", str(port), "--server-pid", str(pid), "--pairs", str(opts.pairs), "--warmup", str(opts.warmup)]
    if mode == "saturate":
        extra = ["--window", str(opts.window), "--duration", str(opts.duration)]
        wall = opts.warmup + opts.duration
    else:
        extra = ["--rate", str(opts.rate), "--duration", str(opts.rate_duration), "--tick", str(opts.rate_tick)]
        wall = opts.warmup + opts.rate_duration
    max_seconds = wall + 60

    def attempt(i: int) -> dict[str, Any]:
        wait_quiet(opts.quiet_limit, opts.quiet_wait, sample=0.5)
        res = run_load(
            [mode, *shared, *extra, "--room-prefix", f"{prefix}a{i - 1}", "--max-seconds", str(max_seconds)],
            opts.client_cpu,
            max_seconds + 10,
        )
        res["attempts"] = i
        if res["excess_cores"] > opts.noise_limit:
            print(f"  noisy ({res['excess_cores']:.2f} excess cores), again", file=sys.stderr, flush=True)
        return res

    return common.quietest(attempt, opts.attempts, opts.noise_limit)[0]


def span(values: Sequence[float], spec: str) -> str:
    """``median (min-max)``, the range even when it looks empty; just the value for a single run."""
    return common.median_range(values, spec, collapse=False)


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, runs in results.items():
        sat = [r["saturate"] for r in runs]
        rate = [r["rate"] for r in runs]
        out[name] = {
            "msgs_per_s": [r["msgs_per_s"] for r in sat],
            "p50_ms": [r["p50_ms"] for r in sat],
            "p99_ms": [r["p99_ms"] for r in sat],
            "srv_cores": [r["srv_cores"] for r in sat],
            "srv_us_per_msg": [r["srv_us_per_msg"] for r in sat],
            "cli_cores": [r["cli_cores"] for r in sat],
            "rate_p50_ms": [r["p50_ms"] for r in rate],
            "rate_p99_ms": [r["p99_ms"] for r in rate],
            "rate_msgs_per_s": [r["msgs_per_s"] for r in rate],
            "rate_srv_us_per_msg": [r["srv_us_per_msg"] for r in rate],
            "rate_skipped": [r.get("skipped", 0) for r in rate],
            "noisy": sum(int(r["noisy"]) for r in sat + rate),
            "errors": sum(int(r["errors"]) for r in sat + rate),
        }
    return out


def ratios(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """ours:LOOP against each baseline (and each --variant against ours) on the same loop: medians of
    throughput, µs/msg and p99."""
    rows = []
    for loop in common.LOOPS:
        ours = summary.get(f"ours:{loop}")
        if ours is None:
            continue
        pairs = [("ours", lib) for lib in LIBS[1:]]
        pairs += sorted({(name.split(":")[0], "ours") for name in summary if name.split(":")[0] not in LIBS})
        for mine_lib, lib in pairs:
            mine = summary.get(f"{mine_lib}:{loop}")
            base = summary.get(f"{lib}:{OWN_LOOP.get(lib, loop)}")
            if mine is None or base is None:
                continue
            rows.append(
                {
                    "ours": f"{mine_lib}:{loop}",
                    "baseline": f"{lib}:{OWN_LOOP.get(lib, loop)}",
                    "throughput": common.ratio(mine["msgs_per_s"], base["msgs_per_s"]),
                    "cost": common.ratio(base["srv_us_per_msg"], mine["srv_us_per_msg"]),
                    "p99_sat": (common.median(mine["p99_ms"]), common.median(base["p99_ms"])),
                    "p99_rate": (common.median(mine["rate_p99_ms"]), common.median(base["rate_p99_ms"])),
                }
            )
    return rows


def print_tables(
    summary: dict[str, dict[str, Any]], opts: argparse.Namespace, versions: dict[str, str] | None = None
) -> None:
    runs = max((len(s["msgs_per_s"]) for s in summary.values()), default=0)
    print(
        f"\nRelay, {opts.pairs} pairs, window {opts.window}, {opts.duration:g} s (saturation); "
        f"{opts.rate:g} msgs/s offered, pacer tick {opts.rate_tick * 1000:g} ms, {opts.rate_duration:g} s (fixed "
        f"rate); median of {runs} (min-max)\n"
    )
    head = (
        "| server : loop | delivered msgs/s | p50 ms | p99 ms | @rate p50 ms | @rate p99 ms "
        "| srv cores | srv µs/msg | @rate srv µs/msg | cli cores | noisy | errors |"
    )
    print(*common.table_head(head), sep="\n")
    for name, s in summary.items():
        print(
            f"| {name} | {span(s['msgs_per_s'], ',.0f')} | {span(s['p50_ms'], '.1f')} | {span(s['p99_ms'], '.1f')} "
            f"| {span(s['rate_p50_ms'], '.2f')} | {span(s['rate_p99_ms'], '.2f')} | {span(s['srv_cores'], '.2f')} "
            f"| {span(s['srv_us_per_msg'], '.1f')} | {span(s['rate_srv_us_per_msg'], '.1f')} "
            f"| {span(s['cli_cores'], '.2f')} | {s['noisy']} | {s['errors']} |"
        )
    rows = ratios(summary)
    if rows:
        print()
        head = (
            "| ours vs baseline | throughput ratio | target | work per CPU s (base µs/msg ÷ ours µs/msg) "
            "| p99 sat ms (ours vs base) | p99 @rate ms (ours vs base) |"
        )
        print(*common.table_head(head), sep="\n")
        for r in rows:
            lib = r["baseline"].split(":")[0]
            target = TARGET_VS_PICOWS if lib == "picows" else TARGET_VS_WEBSOCKETS if lib == "websockets" else None
            if not r["ours"].startswith("ours:"):
                target = None
            verdict = (
                "-" if target is None else (f">= {target:g}: " + ("met" if r["throughput"] >= target else "MISSED"))
            )
            print(
                f"| {r['ours']} / {r['baseline']} | {r['throughput']:.2f}x | {verdict} | {r['cost']:.2f}x "
                f"| {r['p99_sat'][0]:.1f} vs {r['p99_sat'][1]:.1f} | {r['p99_rate'][0]:.2f} vs {r['p99_rate'][1]:.2f} |"
            )
    if versions:
        print(f"\nnode-ws: node {versions['node']}, ws {versions['ws']}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument(
        "--servers", help=f"comma-separated LIB:LOOP (default: {','.join(DEFAULT_SERVERS)}; node-ws:node needs node)"
    )
    common.add_runs(parser)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20_000.0, help="offered msgs/s of the fixed-rate test")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=10.0, help="saturation window, seconds")
    parser.add_argument("--rate-duration", type=float, default=5.0, help="fixed-rate window, seconds")
    tick_help = "pacer period of the fixed-rate test (s): rate x tick messages leave together; 0 spins"
    parser.add_argument("--rate-tick", type=float, default=0.001, help=tick_help)
    parser.add_argument("--quick", action="store_true", help="1 run, 3 s + 2 s windows, 1 attempt")
    common.add_cpu_pinning(parser)
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    common.add_retry_options(parser, attempts=3)
    parser.add_argument("--quiet-limit", type=float, default=0.3, help="busy cores to wait below before a run")
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="longest wait for a quiet machine, s")
    parser.add_argument("--json", metavar="PATH", help="write every result and the summary as JSON")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also run our server from checkout DIR as server NAME (e.g. --variant try=/tmp/relay-try "
        "--servers ours:uvloop,try:uvloop); for measuring a change side by side",
    )
    parser.add_argument("--from-json", metavar="PATH", help="print the tables of a saved --json run and exit")
    opts = parser.parse_args(argv)
    if opts.from_json:
        with open(opts.from_json) as f:
            saved = json.load(f)
        options = argparse.Namespace(**{**vars(opts), **saved["options"]})
        print_tables(summarize(saved["results"]), options, saved.get("versions"))
        return
    if opts.quick:
        opts.runs, opts.duration, opts.rate_duration, opts.attempts = 1, 3.0, 2.0, 1
    if opts.no_pin:
        opts.server_cpu = opts.client_cpu = None
    names = [s.strip() for s in (opts.servers or ",".join(DEFAULT_SERVERS)).split(",") if s.strip()]
    if opts.servers is None and (missing := node_ws.missing_tools()):
        names = [name for name in names if not name.startswith("node-ws:")]
        print(f"node-ws:node left out: no {' or '.join(missing)} on PATH", file=sys.stderr, flush=True)
    opts.servers = ",".join(names)  # what ran, in the --json options
    variants: dict[str, str] = {}
    for spec in opts.variant:
        label, _, path = spec.partition("=")
        if not label or label in LIBS or not os.path.isdir(os.path.join(path, "signaling")):
            parser.error(f"--variant {spec!r}: use NAME=DIR, DIR a checkout with signaling/ in it")
        variants[label] = os.path.abspath(path)
    for name in names:
        lib, _, loop = name.partition(":")
        if (lib not in LIBS and lib not in variants) or loop not in loops_of(lib):
            parser.error(
                f"unknown server {name!r}: use LIB:LOOP with LIB in {LIBS} and LOOP in {common.LOOPS} "
                f"(but {', '.join(f'{lib}:{loop}' for lib, loop in OWN_LOOP.items())})"
            )
    if not 1 <= opts.runs <= 20:
        parser.error("runs must be 1..20")
    versions = None
    if any(name.startswith("node-ws:") for name in names):
        try:
            versions = node_ws.versions(node_ws.ensure_installed())
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            parser.error(f"node-ws: {e}")
        print(f"node-ws: node {versions['node']}, ws {versions['ws']}", file=sys.stderr, flush=True)

    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    max_server_seconds = 10 * (opts.warmup * 2 + opts.duration + opts.rate_duration) + 120
    for run in range(opts.runs):
        for name in names:
            lib, _, loop = name.partition(":")
            print(f"run {run + 1}/{opts.runs}: {name}", file=sys.stderr, flush=True)
            cwd = variants.get(lib)
            with spawn("ours" if cwd else lib, loop, opts.server_cpu, max_server_seconds, cwd) as (pid, port):
                sat = measure("saturate", port, pid, opts, f"s{run}")
                rate = measure("rate", port, pid, opts, f"r{run}")
            print(
                f"  {sat['msgs_per_s']:,.0f} msgs/s, p99 {sat['p99_ms']:.1f} ms, {sat['srv_us_per_msg']:.1f} µs/msg; "
                f"@{opts.rate:g}/s p50 {rate['p50_ms']:.2f} p99 {rate['p99_ms']:.2f} ms",
                file=sys.stderr,
                flush=True,
            )
            results[name].append({"saturate": sat, "rate": rate})
    summary = summarize(results)
    print_tables(summary, opts, versions)
    if opts.json:
        doc = {"options": vars(opts), "results": results, "summary": summary, "ratios": ratios(summary)}
        if versions:
            doc["versions"] = versions
        common.write_json(opts.json, doc, indent=1)


if __name__ == "__main__":
    main()

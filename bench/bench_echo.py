"""Loopback echo, 250 B text, one connection: round trips, and a pipelined window of 100, against baselines.

Run: python -m bench.bench_echo [--libs ours,websockets,picows,aiohttp] [--loops asyncio,uvloop] [--runs 3]
                                [--warmup 1] [--duration 5] [--json OUT.jsonl]

Method (../shared/perf-anchors.md, section 2): for every run, event loop and server library, the echo server
(bench/servers.py) starts pinned to CPU 0; the shared load generator (bench/load_client.py: picows client on
uvloop, callback-style) runs in its own process pinned to CPU 1, first with one message in flight (round
trips), then with 100 (pipelined). Each measurement warms up for 1 s, then measures over a fixed window. The
server's CPU comes from its own /proc/PID/stat over that window; "srv µs/msg" = server CPU seconds ÷ echoed
messages, the fairest cost figure.

The machine is shared: a measurement whose whole-machine busy cores exceed server + client cores by more than
``--noise-limit`` (0.2) is retried (``--attempts`` in all); if every attempt is noisy the quietest one is kept
and counted in the "noisy" column. Runs are interleaved (run 1 of every server, then run 2...), and the tables
show the median of the runs with the min-max range.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench import common
from bench.procstat import pinned, run_json, wait_quiet
from bench.servers import LIBS, spawn_server

#: Issue 4's target for our server's CPU per echoed message in the pipelined test, and picows' anchor.
TARGET_US_PER_MSG = 8.0


def run_client(args: Sequence[str], cpu: int | None, timeout: float) -> dict[str, Any]:
    return run_json(pinned([sys.executable, "-m", "bench.load_client", *args], cpu), timeout, "load client")


def measure(port: int, pid: int, window: int, opts: argparse.Namespace, label: str) -> tuple[dict[str, Any], int]:
    """One clean measurement (or the quietest of ``attempts``); returns it and how many attempts it took."""
    client_args = [
        "echo",
        "--port",
        str(port),
        "--server-pid",
        str(pid),
        "--window",
        str(window),
        "--size",
        str(opts.size),
        "--warmup",
        str(opts.warmup),
        "--duration",
        str(opts.duration),
    ]

    def attempt(_: int) -> dict[str, Any]:
        if opts.quiet_wait:
            wait_quiet(opts.noise_limit, opts.quiet_wait)
        r = run_client(client_args, opts.client_cpu, opts.warmup + opts.duration + 30)
        if r["errors"]:
            raise RuntimeError(f"{label}: the client saw {r['errors']} errors")
        flag = "" if r["excess_cores"] <= opts.noise_limit else "  (noisy, retry)"
        print(
            f"  {label} window {window:3d}: {r['msgs_per_s']:9,.0f} msgs/s  srv {r['srv_us_per_msg']:6.2f} us/msg"
            f"  srv {r['srv_cores']:.2f} cli {r['cli_cores']:.2f} excess {r['excess_cores']:+.2f} cores{flag}",
            file=sys.stderr,
            flush=True,
        )
        return r

    return common.quietest(attempt, opts.attempts, opts.noise_limit, opts.backoff)


def report(rows: list[dict[str, Any]], libs: Sequence[str], loops: Sequence[str]) -> str:
    def pick(lib: str, loop: str, window: int, key: str) -> list[float]:
        return [r[key] for r in rows if r["lib"] == lib and r["loop"] == loop and r["window"] == window]

    out = common.table_head(
        "| server : loop | round trips/s | srv µs/rt | pipelined (window 100) msgs/s | srv cores | srv µs/msg "
        "| client cores | runs (noisy measurements) |"
    )
    pipe = max((r["window"] for r in rows), default=100)
    for loop in loops:
        for lib in libs:
            rt = pick(lib, loop, 1, "msgs_per_s")
            if not rt and not pick(lib, loop, pipe, "msgs_per_s"):
                continue
            noisy = sum(1 for r in rows if r["lib"] == lib and r["loop"] == loop and r["noisy"])
            runs = len(pick(lib, loop, pipe, "msgs_per_s"))
            out.append(
                f"| {lib} : {loop} | {common.median_range(rt, ',.0f')} "
                f"| {common.median_range(pick(lib, loop, 1, 'srv_us_per_msg'), '.1f')} "
                f"| {common.median_range(pick(lib, loop, pipe, 'msgs_per_s'), ',.0f')} "
                f"| {common.median_range(pick(lib, loop, pipe, 'srv_cores'), '.2f')} "
                f"| {common.median_range(pick(lib, loop, pipe, 'srv_us_per_msg'), '.2f')} "
                f"| {common.median_range(pick(lib, loop, pipe, 'cli_cores'), '.2f')} | {runs} ({noisy}) |"
            )
    if "ours" in libs:
        out.append("")
        out.append(
            "Ratios, ours ÷ baseline on the same loop (medians). Throughput: higher is better for ours; "
            "srv µs: lower is better for ours."
        )
        out.append("")
        out += common.table_head("| loop | vs | round trips/s | srv µs/rt | pipelined msgs/s | srv µs/msg |")
        for loop in loops:
            for base in libs:
                if base == "ours":
                    continue
                cells = [
                    common.ratio_cell(pick("ours", loop, window, key), pick(base, loop, window, key))
                    for window, key in (
                        (1, "msgs_per_s"),
                        (1, "srv_us_per_msg"),
                        (pipe, "msgs_per_s"),
                        (pipe, "srv_us_per_msg"),
                    )
                ]
                out.append(f"| {loop} | {base} | " + " | ".join(cells) + " |")
        out.append("")
        for loop in loops:
            us = common.median(pick("ours", loop, pipe, "srv_us_per_msg"))
            verdict = "meets" if us <= TARGET_US_PER_MSG else "MISSES"
            out.append(
                f"- ours : {loop}: {us:.2f} srv µs/msg pipelined, {verdict} the ≤ {TARGET_US_PER_MSG:g} µs target"
            )
    return "\n".join(out)


def main() -> None:
    parser = common.make_parser(__doc__)
    common.add_libs_loops(parser, LIBS)
    common.add_runs(parser)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0, help="measured window, seconds")
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--window", type=int, default=100, help="messages in flight in the pipelined test")
    common.add_retry_options(parser, attempts=4)
    parser.add_argument("--backoff", type=float, default=2.0, help="seconds to wait before retrying a noisy run")
    quiet_help = "before each attempt, wait up to this many seconds for a 1 s sample under --noise-limit busy cores"
    parser.add_argument("--quiet-wait", type=float, default=60.0, help=quiet_help)
    parser.add_argument(
        "--patience",
        type=float,
        default=45.0,
        help="minutes after the start past which every measurement gets one attempt and no quiet wait",
    )
    common.add_cpu_pinning(parser)
    common.add_json_lines(parser)
    parser.add_argument(
        "--summarize",
        nargs="+",
        metavar="JSONL",
        help="measure nothing: print the tables for measurements saved with --json (several files merge)",
    )
    parser.add_argument(
        "--drop-noisy",
        action="store_true",
        help="with --summarize: leave out measurements that stayed noisy after every attempt",
    )
    opts = parser.parse_args()
    libs, loops = common.chosen_libs_loops(parser, opts, LIBS)
    if not (1 <= opts.runs <= 20 and 0 < opts.duration <= 60 and 1 <= opts.attempts <= 10):
        parser.error("runs 1..20, duration 0..60 s, attempts 1..10")

    if opts.summarize:
        rows: list[dict[str, Any]] = []
        for path in opts.summarize:
            rows += common.read_json_lines(path)
        if opts.drop_noisy:
            rows = [r for r in rows if not r["noisy"]]
        runs = max(sum(1 for r in rows if r["lib"] == lib and r["loop"] == loop) for lib in libs for loop in loops)
        print(f"\n{len(rows)} measurements from {', '.join(opts.summarize)}; up to {runs // 2} runs per server\n")
        print(report(rows, [x for x in libs if any(r["lib"] == x for r in rows)], loops))
        return

    rows = []
    started = time.monotonic()
    for run in range(1, opts.runs + 1):
        for loop in loops:
            for lib in libs:
                label = f"run {run} {lib}:{loop}"
                with spawn_server(lib, loop, cpu=opts.server_cpu) as (pid, port):
                    for window in (1, opts.window):
                        if time.monotonic() - started > opts.patience * 60 and opts.attempts > 1:
                            print("  out of patience: one attempt per measurement from now on", file=sys.stderr)
                            opts.attempts, opts.quiet_wait = 1, 0.0
                        r, attempts = measure(port, pid, window, opts, label)
                        r.update(lib=lib, loop=loop, run=run, attempts=attempts)
                        rows.append(r)
                        if opts.json:
                            common.append_json_line(opts.json, r)
    print(
        f"\n{opts.size} B text, one connection, {opts.duration:g} s windows after {opts.warmup:g} s warm-up; "
        f"median (min-max) of {opts.runs} runs; {time.monotonic() - started:.0f} s in all\n"
    )
    print(report(rows, libs, loops))


if __name__ == "__main__":
    main()

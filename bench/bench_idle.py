"""Server memory per idle WebSocket connection, at 2,000 and 10,000 connections, against baselines.

Run: python -m bench.bench_idle [--libs ours,websockets,picows,aiohttp] [--loops asyncio,uvloop]
                                [--conns 2000,10000] [--runs 3] [--json OUT.jsonl]

Method (../shared/perf-anchors.md, section 4): a fresh echo server (bench/servers.py, pinned to CPU 0) per
measurement; the load generator (bench/load_client.py, pinned to CPU 1) opens and closes 10 warm-up
connections, reads the server's RSS, opens N connections in batches of 100, waits 2 s idle, reads the RSS
again. "KiB/conn" = RSS growth ÷ N. Both processes raise RLIMIT_NOFILE (soft to hard) for 10k sockets.
RSS counts the server's user-space memory only (kernel socket buffers are not in it), the same for everyone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from bench.bench_echo import fmt, run_client
from bench.servers import LIBS, LOOPS, raise_nofile_limit, spawn_server

#: Issue 4's target: at most half of websockets' memory per idle connection.
TARGET_RATIO = 0.5


def report(rows: list[dict[str, Any]], libs: list[str], loops: list[str], counts: list[int]) -> str:
    def pick(lib: str, loop: str, n: int, key: str) -> list[float]:
        return [r[key] for r in rows if r["lib"] == lib and r["loop"] == loop and r["conns"] == n]

    head = "| server : loop | " + " | ".join(f"KiB/conn @ {n:,}" for n in counts) + " | base RSS MiB |"
    if "websockets" in libs:
        head += " " + " | ".join(f"÷ websockets @ {n:,}" for n in counts) + " |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for loop in loops:
        for lib in libs:
            cells = [fmt(pick(lib, loop, n, "kib_per_conn"), ".1f") for n in counts]
            base = [r["rss0_kib"] / 1024 for r in rows if r["lib"] == lib and r["loop"] == loop]
            line = f"| {lib} : {loop} | " + " | ".join(cells) + f" | {fmt(base, '.0f')} |"
            if "websockets" in libs:
                ratios = []
                for n in counts:
                    a, b = pick(lib, loop, n, "kib_per_conn"), pick("websockets", loop, n, "kib_per_conn")
                    ratios.append(f"{statistics.median(a) / statistics.median(b):.2f}" if a and b else "-")
                line += " " + " | ".join(ratios) + " |"
            out.append(line)
    if "ours" in libs and "websockets" in libs:
        out.append("")
        for loop in loops:
            for n in counts:
                a, b = pick("ours", loop, n, "kib_per_conn"), pick("websockets", loop, n, "kib_per_conn")
                if a and b:
                    ratio = statistics.median(a) / statistics.median(b)
                    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
                    out.append(
                        f"- ours : {loop} @ {n:,}: {statistics.median(a):.1f} KiB/conn = {ratio:.2f} x websockets, "
                        f"{verdict} the <= {TARGET_RATIO:g} x target"
                    )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--libs", default="ours,websockets,picows,aiohttp", help=f"comma-separated, from {LIBS}")
    parser.add_argument("--loops", default="asyncio,uvloop", help="comma-separated, from asyncio,uvloop")
    parser.add_argument("--conns", default="2000,10000", help="comma-separated connection counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--hold", type=float, default=2.0, help="seconds idle before the second RSS reading")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--json", help="append every measurement as a JSON line to this file")
    opts = parser.parse_args()
    libs = [x for x in opts.libs.split(",") if x]
    loops = [x for x in opts.loops.split(",") if x]
    counts = [int(x) for x in opts.conns.split(",") if x]
    for lib in libs:
        if lib not in LIBS:
            parser.error(f"unknown lib {lib}")
    for loop in loops:
        if loop not in LOOPS:
            parser.error(f"unknown loop {loop}")
    if not (1 <= opts.runs <= 20 and all(1 <= n <= 20_000 for n in counts)):
        parser.error("runs 1..20, conns 1..20000")
    limit = raise_nofile_limit(max(counts) + 1024)  # inherited by the server and client processes
    if limit < max(counts) + 100:
        parser.error(f"RLIMIT_NOFILE is {limit}: too low for {max(counts)} connections (raise the hard limit)")

    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    for run in range(1, opts.runs + 1):
        for n in counts:
            for loop in loops:
                for lib in libs:
                    with spawn_server(lib, loop, cpu=opts.server_cpu) as (pid, port):
                        client_args = ["idle", "--port", str(port), "--server-pid", str(pid), "--conns", str(n)]
                        client_args += ["--batch", str(opts.batch), "--hold", str(opts.hold)]
                        r = run_client(client_args, opts.client_cpu, 180)
                    if r["errors"]:
                        raise RuntimeError(f"{lib}:{loop}: {r['errors']} of {n} connections dropped while idle")
                    r.update(lib=lib, loop=loop, run=run)
                    rows.append(r)
                    print(
                        f"  run {run} {lib}:{loop} {n:6,} conns: {r['kib_per_conn']:6.2f} KiB/conn "
                        f"(RSS {r['rss0_kib'] / 1024:.1f} -> {r['rss1_kib'] / 1024:.1f} MiB, "
                        f"opened in {r['open_seconds']:.1f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                    if opts.json:
                        with open(opts.json, "a") as f:
                            f.write(json.dumps(r) + "\n")
    print(
        f"\nServer RSS growth per idle connection, batches of {opts.batch}, {opts.hold:g} s idle; "
        f"median (min-max) of {opts.runs} runs; {time.monotonic() - started:.0f} s in all\n"
    )
    print(report(rows, libs, loops, counts))


if __name__ == "__main__":
    main()

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

import math
import sys
import time
from typing import Any

from bench import common
from bench.bench_echo import run_client
from bench.servers import LIBS, raise_nofile_limit, spawn_server

#: Issue 4's target: at most half of websockets' memory per idle connection.
TARGET_RATIO = 0.5


def report(rows: list[dict[str, Any]], libs: list[str], loops: list[str], counts: list[int]) -> str:
    def kib(lib: str, loop: str, n: int) -> list[float]:
        return [r["kib_per_conn"] for r in rows if r["lib"] == lib and r["loop"] == loop and r["conns"] == n]

    head = "| server : loop | " + " | ".join(f"KiB/conn @ {n:,}" for n in counts) + " | base RSS MiB |"
    if "websockets" in libs:
        head += " " + " | ".join(f"÷ websockets @ {n:,}" for n in counts) + " |"
    out = common.table_head(head)
    for loop in loops:
        for lib in libs:
            cells = [common.median_range(kib(lib, loop, n), ".1f") for n in counts]
            base = [r["rss0_kib"] / 1024 for r in rows if r["lib"] == lib and r["loop"] == loop]
            line = f"| {lib} : {loop} | " + " | ".join(cells) + f" | {common.median_range(base, '.0f')} |"
            if "websockets" in libs:
                ratios = [common.ratio_cell(kib(lib, loop, n), kib("websockets", loop, n), "") for n in counts]
                line += " " + " | ".join(ratios) + " |"
            out.append(line)
    if "ours" in libs and "websockets" in libs:
        out.append("")
        for loop in loops:
            for n in counts:
                ours = kib("ours", loop, n)
                r = common.ratio(ours, kib("websockets", loop, n))
                if not math.isnan(r):
                    verdict = "meets" if r <= TARGET_RATIO else "MISSES"
                    out.append(
                        f"- ours : {loop} @ {n:,}: {common.median(ours):.1f} KiB/conn = {r:.2f} x websockets, "
                        f"{verdict} the <= {TARGET_RATIO:g} x target"
                    )
    return "\n".join(out)


def main() -> None:
    parser = common.make_parser(__doc__)
    common.add_libs_loops(parser, LIBS)
    parser.add_argument("--conns", default="2000,10000", help="comma-separated connection counts")
    common.add_runs(parser)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--hold", type=float, default=2.0, help="seconds idle before the second RSS reading")
    common.add_cpu_pinning(parser)
    common.add_json_lines(parser)
    opts = parser.parse_args()
    libs, loops = common.chosen_libs_loops(parser, opts, LIBS)
    counts = [int(x) for x in opts.conns.split(",") if x]
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
                        common.append_json_line(opts.json, r)
    print(
        f"\nServer RSS growth per idle connection, batches of {opts.batch}, {opts.hold:g} s idle; "
        f"median (min-max) of {opts.runs} runs; {time.monotonic() - started:.0f} s in all\n"
    )
    print(report(rows, libs, loops, counts))


if __name__ == "__main__":
    main()

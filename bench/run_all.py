"""Every benchmark in turn, each printing its own table with ratios against the baselines measured in the same run.

Run: python -m bench.run_all [--quick]   (make bench)

The full set takes tens of minutes on a 2-core machine (the echo and relay benchmarks wait for a quiet machine
and take the median of 3 runs); --quick gives rough figures in a few minutes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from bench import common


def plan(quick: bool) -> list[list[str]]:
    if quick:
        return [
            ["bench.bench_parse", "--quick"],
            ["bench.bench_echo", "--runs", "1", "--duration", "2"],
            ["bench.bench_idle", "--runs", "1", "--conns", "2000"],
            ["bench.bench_relay", "--quick"],
            ["bench.bench_cluster", "--quick"],
            ["bench.bench_abuse", "--quick"],
            ["bench.bench_cluster_abuse", "--quick"],
            ["bench.bench_peerjs", "--quick"],
            ["bench.bench_load", "both", "--conns", "2000", "--churn-clients", "200", "--seconds", "10"],
            ["bench.bench_webhooks", "--quick"],
            ["bench.bench_ywebrtc", "--quick"],
            ["bench.bench_whip", "--quick"],
        ]
    return [
        ["bench.bench_parse"],
        ["bench.bench_echo"],
        ["bench.bench_idle"],
        ["bench.bench_relay"],
        ["bench.bench_cluster"],
        ["bench.bench_abuse"],
        ["bench.bench_cluster_abuse"],
        ["bench.bench_peerjs"],
        ["bench.bench_load"],
        ["bench.bench_webhooks"],
        ["bench.bench_ywebrtc"],
        ["bench.bench_whip"],
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.make_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs: rough figures in a few minutes")
    args = parser.parse_args(argv)
    failed = []
    for module, *rest in plan(args.quick):
        print(f"\n=== python -m {module} {' '.join(rest)}", flush=True)
        rc = subprocess.run([sys.executable, "-m", module, *rest], check=False).returncode
        if rc:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

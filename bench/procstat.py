"""What every benchmark reads from /proc and does with its subprocesses, in one place.

CPU accounting from the kernel (/proc/PID/stat, /proc/stat), a wait for a quiet machine (these VMs are shared),
running a helper process that prints one JSON line, and stopping a server process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CLK_TCK",
    "machine_busy_seconds",
    "proc_cpu_seconds",
    "rss_kib",
    "run_json",
    "stop_process",
    "wait_quiet",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5), counted from 1


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (user, nice, system, irq, softirq, steal), from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        line = f.readline()
    v = [int(x) for x in line.split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wait_quiet(limit: float, max_wait: float, sample: float = 1.0) -> float:
    """Wait (at most ``max_wait`` s) for a ``sample``-second window with at most ``limit`` busy cores.

    Returns the last sample: other sessions share these machines, and a busy one skews every figure.
    """
    deadline = time.monotonic() + max_wait
    while True:
        m0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(sample)
        busy = (machine_busy_seconds() - m0) / (time.monotonic() - t0)
        if busy <= limit or time.monotonic() > deadline:
            return busy
        print(f"  machine busy ({busy:.2f} cores), waiting", file=sys.stderr, flush=True)


def run_json(cmd: Sequence[str], timeout: float, what: str, **popen: Any) -> dict[str, Any]:
    """Run a helper process to its end; its last stdout line is the JSON result."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **popen)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

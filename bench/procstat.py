"""What every benchmark reads from /proc and does with its subprocesses, in one place.

CPU accounting from the kernel (/proc/PID/stat, /proc/stat), a wait for a quiet machine (these VMs are shared),
pinning a command to a CPU, running a helper process that prints one JSON line, and starting and stopping a
server process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

__all__ = [
    "CLK_TCK",
    "free_port",
    "machine_busy_seconds",
    "pinned",
    "port_ready",
    "proc_cpu_seconds",
    "rss_kib",
    "run_json",
    "server_env",
    "snapshot",
    "started",
    "stop_process",
    "wait_quiet",
    "window_figures",
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


def snapshot(count: int, server_pid: int | Sequence[int] | None, **counters: int) -> dict[str, float]:
    """What a load generator reads at each end of its measured window, all in one loop iteration.

    The time, its message ``count`` and other ``counters``, the server's CPU seconds (0 without a pid; the sum
    when the server side is several processes, each also as ``srv:<pid>``), its own CPU seconds and the whole
    machine's busy seconds.
    """
    pids = [] if server_pid is None else [server_pid] if isinstance(server_pid, int) else list(server_pid)
    each = {f"srv:{pid}": proc_cpu_seconds(pid) for pid in pids}
    return {
        "t": time.perf_counter(),
        "count": count,
        **counters,
        **each,
        "srv": sum(each.values()),
        "cli": time.process_time(),
        "machine": machine_busy_seconds(),
    }


def window_figures(s0: dict[str, float], s1: dict[str, float]) -> dict[str, Any]:
    """The figures of the window between two snapshots.

    ``excess_cores`` is machine busy cores minus server and client cores: other load on the shared machine.
    ``srv_us_per_msg_each`` gives each server process's part when there are several.
    """
    seconds = s1["t"] - s0["t"]
    msgs = int(s1["count"] - s0["count"])
    srv = s1["srv"] - s0["srv"]
    cli = s1["cli"] - s0["cli"]
    machine = s1["machine"] - s0["machine"]
    each = {
        key.split(":", 1)[1]: (s1[key] - s0[key]) / msgs * 1e6 if msgs else float("inf")
        for key in s0
        if key.startswith("srv:")
    }
    return {
        "msgs": msgs,
        "seconds": seconds,
        "msgs_per_s": msgs / seconds,
        "srv_cores": srv / seconds,
        "srv_us_per_msg": srv / msgs * 1e6 if msgs else float("inf"),
        "srv_us_per_msg_each": each,
        "cli_cores": cli / seconds,
        "machine_cores": machine / seconds,
        "excess_cores": (machine - srv - cli) / seconds,
    }


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


def pinned(cmd: Sequence[str], cpu: int | None) -> list[str]:
    """``cmd`` under ``taskset -c CPU`` (which execs it in place: the pid stays the command's); as is for None."""
    return ["taskset", "-c", str(cpu), *cmd] if cpu is not None else list(cmd)


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


@contextlib.contextmanager
def started(
    cmd: Sequence[str], what: str, ready: Callable[[int, IO[str]], int | None], **popen: Any
) -> Iterator[tuple[int, int]]:
    """Start a server; yield (pid, port) once ``ready(pid, output)`` gives its port; stop it on leaving the block.

    Its stdout and stderr go to a temporary file (a full pipe could block it), which ``ready`` may read; if the
    process exits or 20 s pass before it is ready, the tail of that output goes into the error.
    """
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, **popen)
        try:
            deadline = time.monotonic() + 20
            while (port := ready(proc.pid, out)) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out.seek(0)
                    raise RuntimeError(f"{what} did not start:\n{out.read()[-2000:]}")
                time.sleep(0.05)
            yield proc.pid, port
        finally:
            stop_process(proc)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_ready(port: int, host: str = "127.0.0.1") -> Callable[[int, IO[str]], int | None]:
    """A ``started`` readiness check for a server that listens on a known port: ready once it accepts."""

    def ready(pid: int, out: IO[str]) -> int | None:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return port if sock.connect_ex((host, port)) == 0 else None

    return ready


def server_env() -> dict[str, str]:
    """This environment without SIGNALING_* variables: a server under test runs on its defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SIGNALING_")}

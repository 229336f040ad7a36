"""The cluster bench_cluster_abuse.py attacks: redis-server and two nodes from a source tree, started and read.

Redis runs with its own defaults (``--save '' --appendonly no`` only), the nodes with every setting at its
default: what is measured is what an operator gets out of the box.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procstat
from bench.bench_relay import _die_with_parent

__all__ = ["Cluster", "cluster", "code_under_test", "http_get", "logged_events", "redis_disconnects"]


@dataclass
class Cluster:
    ports: list[int]
    pids: list[int]  # node 1, node 2
    redis_pid: int
    redis_port: int
    logs: Path  # redis.log, node1.log, node2.log


def tree_env(tree: Path) -> dict[str, str]:
    env = procstat.server_env()
    env["PYTHONPATH"] = str(tree)
    return env


def code_under_test(tree: Path) -> str:
    """Where the nodes will import ``signaling`` from (a check that ``--tree`` does what it says)."""
    out = subprocess.run(
        [sys.executable, "-c", "import signaling; print(signaling.__file__)"],
        cwd=tree,
        env=tree_env(tree),
        capture_output=True,
        text=True,
        check=True,
    )
    return str(Path(out.stdout.strip()).parent)


def http_get(port: int, path: str) -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@contextlib.contextmanager
def process(cmd: list[str], log: Path, ready: Callable[[], bool], **popen: Any) -> Iterator[int]:
    """Start ``cmd``, its output in ``log``; yield its pid once ``ready()``; stop it on leaving the block."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, **popen)
        try:
            deadline = time.monotonic() + 20
            while not ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd[0]} did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.05)
            yield proc.pid
        finally:
            procstat.stop_process(proc)


def node_ready(port: int) -> Callable[[], bool]:
    """Ready once /readyz says so: the node listens and has joined the cluster."""

    def ready() -> bool:
        try:
            return http_get(port, "/readyz")[0] == 200
        except OSError:
            return False

    return ready


def redis_ready(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return ready


@contextlib.contextmanager
def cluster(tree: Path) -> Iterator[Cluster]:
    """Redis and two nodes from ``tree``, every output in a temporary folder (read before it goes)."""
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cluster-abuse-")))
        redis_port = procstat.free_port()
        cmd = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        redis_pid = stack.enter_context(process(cmd, logs / "redis.log", redis_ready(redis_port)))
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        pids, ports = [], []
        for i in range(2):
            port = procstat.free_port()
            cmd = [sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1", "--port", str(port)]
            cmd += ["--redis-url", redis_url, "--uvloop"]
            log = logs / f"node{i + 1}.log"
            pids.append(stack.enter_context(process(cmd, log, node_ready(port), cwd=tree, env=tree_env(tree))))
            ports.append(port)
        yield Cluster(ports, pids, redis_pid, redis_port, logs)


def redis_disconnects(log: Path) -> int:
    """Clients Redis closed for going over their output buffer limit (a node's subscription, here)."""
    return sum("output buffer limits" in line for line in log.read_text(errors="replace").splitlines())


def logged_events(log: Path) -> dict[str, int]:
    """What a node logged at warning and above: event (and reason, when it gives one) -> count."""
    events: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            what = str(entry.get("event"))
            if entry.get("reason"):
                what += f" ({str(entry['reason'])[:80]})"
            events[what] += 1
    return dict(events)

"""What the benchmark scripts share: their command lines, and how runs become tables and JSON.

- Command lines: ``make_parser`` (the script's docstring as its help, kept as written) and the options that
  several scripts take with the same names and defaults: ``--runs``, ``--libs``/``--loops``, ``--server-cpu``/
  ``--client-cpu``, ``--json`` as lines; for the helper processes ``--port``, ``--loop`` and ``--max-seconds``.
- Runs: retrying a measurement while the shared machine is noisy, keeping the quietest.
- Summaries: the median of the runs with its min-max range, ratios of medians, markdown table heads.
- JSON: a measurement appended as a line, a document written whole, a helper's one-line result on stdout.
- The helper processes' side: the event loop by name, a bounded run that prints its result, a server that runs
  until SIGTERM/SIGINT or its time limit, a picows listener's answer to a close frame.
- The header of a masked client text frame, which the load generators and the parse input build.

/proc accounting and starting and stopping processes are in bench/procstat.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import statistics
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LOOPS",
    "add_cpu_pinning",
    "add_helper_options",
    "add_json_lines",
    "add_libs_loops",
    "add_retry_options",
    "add_runs",
    "answer_close",
    "append_json_line",
    "chosen_libs_loops",
    "loop_factory",
    "make_parser",
    "median",
    "median_range",
    "print_json_line",
    "quietest",
    "ratio",
    "ratio_cell",
    "read_json_lines",
    "relative_spread",
    "run_bounded",
    "run_server",
    "serve_until_stopped",
    "server_parser",
    "table_head",
    "text_frame_header",
    "write_json",
]

LOOPS = ("asyncio", "uvloop")


# ------------------------------------------------------------------------------------------ command lines


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows ``doc`` (the script's docstring) with its line breaks."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_runs(parser: argparse.ArgumentParser, default: int = 3, help: str | None = None) -> None:
    parser.add_argument("--runs", type=int, default=default, help=help)


def add_libs_loops(parser: argparse.ArgumentParser, libs: Sequence[str]) -> None:
    """``--libs`` and ``--loops`` of the echo-server benchmarks (bench/servers.py's ``libs``)."""
    parser.add_argument("--libs", default="ours,websockets,picows,aiohttp", help=f"comma-separated, from {libs}")
    parser.add_argument("--loops", default="asyncio,uvloop", help="comma-separated, from asyncio,uvloop")


def chosen_libs_loops(
    parser: argparse.ArgumentParser, opts: argparse.Namespace, libs: Sequence[str]
) -> tuple[list[str], list[str]]:
    """``--libs`` and ``--loops`` as lists; an unknown name is a usage error."""
    chosen_libs = [x for x in opts.libs.split(",") if x]
    chosen_loops = [x for x in opts.loops.split(",") if x]
    for lib in chosen_libs:
        if lib not in libs:
            parser.error(f"unknown lib {lib}")
    for loop in chosen_loops:
        if loop not in LOOPS:
            parser.error(f"unknown loop {loop}")
    return chosen_libs, chosen_loops


def add_cpu_pinning(parser: argparse.ArgumentParser) -> None:
    """The server runs on one CPU, the load generator on the other."""
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)


def add_retry_options(parser: argparse.ArgumentParser, attempts: int) -> None:
    """``--attempts`` and ``--noise-limit``, what ``quietest`` retries with."""
    parser.add_argument(
        "--attempts", type=int, default=attempts, help="tries per measurement while the machine is noisy"
    )
    parser.add_argument(
        "--noise-limit", type=float, default=0.2, help="busy cores beyond server + client that make a measurement noisy"
    )


def add_json_lines(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", help="append every measurement as a JSON line to this file")


def add_helper_options(parser: argparse.ArgumentParser) -> None:
    """What every load-generator mode takes: the server's port, the client's event loop, a bound in time."""
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=LOOPS, default="uvloop")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="hard bound on the whole run")


def server_parser(doc: str | None, libs: Sequence[str], *, port_required: bool) -> argparse.ArgumentParser:
    """The command line of a benchmark server process: which library, which loop, where, for how long at most."""
    parser = make_parser(doc)
    parser.add_argument("--lib", choices=libs, required=True)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    if port_required:
        parser.add_argument("--port", type=int, required=True)
    else:
        parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="exit by itself after this long")
    return parser


# ------------------------------------------------------------------------------------------ runs


def quietest(
    attempt: Callable[[int], dict[str, Any]], attempts: int, noise_limit: float, backoff: float = 0.0
) -> tuple[dict[str, Any], int]:
    """Call ``attempt(1)``, ``attempt(2)``... until a result's ``excess_cores`` is at most ``noise_limit``.

    Other sessions share the machine: a measurement taken while they were busy is retried, ``backoff`` seconds
    after it, up to ``attempts`` in all. Returns the clean result, or else the quietest one, with ``noisy`` set
    either way, and how many attempts were made.
    """
    best: dict[str, Any] | None = None
    for i in range(1, attempts + 1):
        result = attempt(i)
        if best is None or result["excess_cores"] < best["excess_cores"]:
            best = result
        if result["excess_cores"] <= noise_limit:
            result["noisy"] = False
            return result, i
        if backoff:
            time.sleep(backoff)
    assert best is not None, "attempts must be at least 1"
    best["noisy"] = True
    return best, attempts


# ------------------------------------------------------------------------------------------ summaries


def median(values: Sequence[float]) -> float:
    """The median; NaN when there is nothing to take it of."""
    return statistics.median(values) if values else float("nan")


def median_range(values: Sequence[float], spec: str, *, collapse: bool = True) -> str:
    """``median (min-max)`` formatted with ``spec``; ``-`` for no values, just the median for one.

    ``collapse``: also just the median when min and max look the same once formatted.
    """
    if not values:
        return "-"
    med = format(median(values), spec)
    lo, hi = format(min(values), spec), format(max(values), spec)
    if len(values) == 1 or (collapse and lo == hi):
        return med
    return f"{med} ({lo}-{hi})"


def relative_spread(values: Sequence[float]) -> float:
    """Half the max-min spread, relative to the median (the anchors' "±")."""
    return (max(values) - min(values)) / 2 / statistics.median(values)


def ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """median(a) / median(b); NaN when either has no values or b's median is 0."""
    num, den = median(a), median(b)
    return num / den if den and not math.isnan(den) else float("nan")


def ratio_cell(a: Sequence[float], b: Sequence[float], suffix: str = "x") -> str:
    """``median(a) / median(b)`` to two decimals, or ``-`` when there is no ratio."""
    r = ratio(a, b)
    return "-" if math.isnan(r) else f"{r:.2f}{suffix}"


def table_head(head: str) -> list[str]:
    """A markdown table's head line and the separator line under it."""
    return [head, "|" + "---|" * (head.count("|") - 1)]


# ------------------------------------------------------------------------------------------ JSON


def append_json_line(path: str, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_json_lines(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_json(path: str, doc: dict[str, Any], indent: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=indent)
        f.write("\n")


def print_json_line(result: dict[str, Any]) -> None:
    """A helper process's result: one JSON line on stdout (procstat.run_json reads the last line)."""
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------ helper processes


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """For ``asyncio.Runner``: uvloop's loop for ``"uvloop"``, None (the stock loop) for ``"asyncio"``."""
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return None


def run_bounded(job: Coroutine[Any, Any, dict[str, Any]], loop: str, max_seconds: float) -> None:
    """Run a load generator's ``job`` on ``loop`` for at most ``max_seconds``; print its result as a JSON line."""

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(job, max_seconds)

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        result = runner.run(bounded())
    print_json_line(result)


async def serve_until_stopped(port: int, close: Callable[[], Awaitable[None]], max_seconds: float) -> None:
    """Print ``READY <pid> <port>``, run until SIGTERM/SIGINT or ``max_seconds``, then ``close()`` (3 s at most)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {os.getpid()} {port}", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    # Bounded shutdown: a baseline that waits on its peers must not keep the bench waiting.
    with contextlib.suppress(TimeoutError, Exception):
        await asyncio.wait_for(close(), 3.0)


def run_server(serve: Coroutine[Any, Any, None], loop: str) -> None:
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(serve)


def answer_close(transport: Any, frame: Any) -> None:
    """What a picows listener here does with a frame it does not handle: answers a close, drops the connection."""
    from picows import WSMsgType

    if frame.msg_type == WSMsgType.CLOSE:
        transport.send_close(frame.get_close_code())
        transport.disconnect()


# ------------------------------------------------------------------------------------------ frames


def text_frame_header(length: int) -> bytes:
    """FIN + text opcode, the MASK bit and the 7/16/64-bit length of a client's text frame (the mask key follows)."""
    if length < 126:
        return struct.pack("!BB", 0x81, 0x80 | length)
    if length < 65536:
        return struct.pack("!BBH", 0x81, 0x80 | 126, length)
    return struct.pack("!BBQ", 0x81, 0x80 | 127, length)


def chosen(parser: argparse.ArgumentParser, spec: str, names: Sequence[str]) -> list[str]:
    """The comma-separated names of ``spec`` (an ``--attacks`` option, say), each one of ``names``."""
    picked = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = set(picked) - set(names)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))} (choose from {', '.join(names)})")
    return picked

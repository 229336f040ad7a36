"""Where our server spends its time per relayed message: an in-process stage breakdown and a live profile.

Run: python -m bench.profile_relay stages [--number 20000] [--batch 1,8]
     python -m bench.profile_relay live [--loop uvloop|asyncio] [--seconds 6] [--rate-hz 250] [--native]
                                        [--pairs 50] [--window 20] [--load saturate|rate] [--rate 20000]

``stages`` builds the real server objects in this process (``SignalingApp``, ``WebSocketServer``,
``ServerConnection`` with a fake transport whose ``write`` only counts bytes), upgrades two connections with a
real HTTP request, joins them to one room, and then times, per 250-byte ``candidate`` message (best of 7
repeats of ``--number`` messages each):

- each stage alone: frame parse (``Connection.receive_data`` of a batch of masked frames), pydantic
  ``validate_json``, the relayed JSON, the room lookup and ``router.send`` to a sink that does nothing, the send framing
  (``Connection.send_text`` + ``data_to_send``);
- ``Session.handle_text`` with the real sink (everything from the text to the partner's queued frame);
- ``ServerConnection.data_received`` of a batch of ``--batch`` frames: everything the server does per message
  except the event loop and the two syscalls (socket read, ``transport.write``).

``live`` starts ``python -m signaling serve`` (the benchmark's flags) pinned to CPU 0, drives it with
bench/relay_load.py pinned to CPU 1 (saturation; ``--load rate``: the fixed offered rate), attaches
``py-spy record`` (raw stacks, ``--native`` to see into uvloop, pydantic_core and the kernel-bound libc calls)
for ``--seconds``, and files each sample under the innermost frame of ours that it passes through (or the
loop/syscall it is in when none), then prints each category's share of the server's busy samples and the µs
per message that share is of the measured "srv µs/msg". Needs py-spy in the venv (``pip install py-spy``) and
ptrace rights (root, or kernel.yama.ptrace_scope=0). Run it from a scratch copy of the repository (cwd) to
profile a variant.

Traffic goes to 127.0.0.1 only; everything is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from websockets.speedups import apply_mask

from bench import common
from bench.relay_load import candidate_template

REQUEST = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


# ------------------------------------------------------------------------------------------ stages


def masked_frame(payload: bytes) -> bytes:
    """A client text frame with a fresh random mask."""
    key = random.getrandbits(32).to_bytes(4, "little")
    return common.text_frame_header(len(payload)) + key + apply_mask(payload, key)


def server_texts(data: bytes) -> list[str]:
    """Decode the unmasked server frames in ``data`` (after the 101 response, if any) into texts."""
    if data.startswith(b"HTTP/1.1"):
        data = data[data.index(b"\r\n\r\n") + 4 :]
    texts, pos = [], 0
    while pos < len(data):
        n = data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            n = struct.unpack_from("!H", data, pos)[0]
            pos += 2
        elif n == 127:
            n = struct.unpack_from("!Q", data, pos)[0]
            pos += 8
        texts.append(data[pos : pos + n].decode())
        pos += n
    return texts


def candidate_text(to: str, ts: int = 1234567890123456789, size: int = 250) -> str:
    """The load generator's ``candidate`` message (bench/relay_load.py), with the send time ``ts``."""
    prefix, suffix = candidate_template(to, size)
    return (prefix + b"%019d" % ts + suffix).decode()


class FakeTransport:
    """Enough of asyncio.Transport for ServerConnection; ``write`` keeps the bytes only while asked to."""

    def __init__(self) -> None:
        self.keep = True
        self.buf = bytearray()
        self.writes = 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.writes += 1
        if self.keep:
            self.buf += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def best_us(fn: Callable[[], object], per_call: int, number: int) -> float:
    """µs per message: best of 7 repeats of ``number // per_call`` calls, each handling ``per_call`` messages."""
    calls = max(1, number // per_call)
    times = timeit.repeat(fn, number=calls, repeat=7, timer=time.process_time)  # CPU time: robust to preemption
    return min(times) / (calls * per_call) * 1e6


async def run_stages(opts: argparse.Namespace) -> list[tuple[str, float]]:
    from signaling.app.process import transport_config
    from signaling.app.settings import Settings
    from signaling.app.wiring import SignalingApp
    from signaling.logs import configure_logging
    from signaling.protocol.encode import relayed_candidate_json
    from signaling.protocol.parse import parse_client_message
    from signaling.rooms.backends import in_memory
    from signaling.rooms.driver import run_inline
    from signaling.rooms.peers import Member
    from signaling.ws.aio.server import ServerConnection, WebSocketServer

    configure_logging("info", "json", stream=io.StringIO())  # production level; per message it logs nothing
    settings = Settings.model_validate(
        {
            "rate_limit": 1_000_000,
            "rate_burst": 1_000_000,
            "rate_limit_bytes": 10**9,
            "rate_burst_bytes": 10**9,
            "frame_rate": 10**9,
            "frame_burst": 10**9,
            "room_max_peers": 8,
            "max_rooms": 100_000,
        }
    )
    app = SignalingApp(settings)
    server = WebSocketServer(app, transport_config(settings))
    server.loop = asyncio.get_running_loop()

    def connect() -> tuple[ServerConnection, FakeTransport]:
        conn = ServerConnection(server)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(REQUEST)
        return conn, transport

    (a, ta), (b, tb) = connect(), connect()
    a.data_received(masked_frame(b'{"type":"join","room":"pair0"}'))
    b.data_received(masked_frame(b'{"type":"join","room":"pair0"}'))
    welcome_b = json.loads(server_texts(bytes(tb.buf))[-1])
    peer_b, peer_a = welcome_b["peer"], welcome_b["peers"][0]["peer"]
    ta.keep = tb.keep = False
    text = candidate_text(peer_b)
    raw = text.encode()
    print(f"message: {len(raw)} bytes; a={peer_a} b={peer_b}", file=sys.stderr)

    results: list[tuple[str, float]] = []
    n = opts.number
    # 1. Frame parse alone, on a's sans-I/O connection (events are dropped).
    batches = {k: b"".join(masked_frame(raw) for _ in range(k)) for k in opts.batch}
    receive = a.conn.receive_data
    for k, data in batches.items():
        results.append(
            (
                f"frame parse + unmask + UTF-8 (Connection.receive_data, {k}/read)",
                best_us(functools.partial(receive, data), k, n),
            )
        )
    # 2. Validation.
    msg: Any = parse_client_message(text)
    results.append(("pydantic validate_json (parse_client_message)", best_us(lambda: parse_client_message(text), 1, n)))
    # 3. Serialization of the relayed message.
    results.append(
        (
            "relayed JSON (relayed_candidate_json)",
            best_us(lambda: relayed_candidate_json(peer_a, msg["candidate"]), 1, n),
        )
    )
    out = relayed_candidate_json(peer_a, msg["candidate"])

    # 4. The room lookup and the bus, to a sink that does nothing.
    class NullSink:
        def deliver(self, text: str) -> None:
            pass

        def taken_over(self) -> None:
            pass

        def removed(self) -> None:
            pass

    backends = in_memory()
    directory, router = backends.directory, backends.router
    for _ in range(2):
        peer = Member(directory.new_peer_id(), "r", None, None, directory.node, False)
        run_inline(directory.join(peer))
        backends.deliveries.attach(peer.peer, NullSink())
    room = directory.members("r")
    target = room[peer.peer]
    results.append(("room lookup + router.send (NullSink)", best_us(lambda: router.send(room[target.peer], out), 1, n)))
    # 5. Send framing on b's connection, drained every 8 messages.
    conn_b = b.conn

    def frame8() -> None:
        send = conn_b.send_text
        for _ in range(8):
            send(out)
        conn_b.data_to_send()

    results.append(("send framing (Connection.send_text + data_to_send)", best_us(frame8, 8, n)))
    # 6. The domain end to end with the real sink (b's ServerConnection queues, flushed every 8).
    session = a.handler.session  # type: ignore[union-attr]

    def domain8() -> None:
        server.batch.open()
        handle = session.handle_text
        for _ in range(8):
            handle(text)
        server.batch.close()

    results.append(("Session.handle_text .. partner's transport.write (8 per flush)", best_us(domain8, 8, n)))
    # 7. Everything but the loop and the syscalls: data_received of k frames.
    for k, data in batches.items():
        results.append(
            (
                f"ServerConnection.data_received, all in ({k} frames/read)",
                best_us(functools.partial(a.data_received, data), k, n),
            )
        )
    return results


def main_stages(opts: argparse.Namespace) -> None:
    results = asyncio.run(run_stages(opts))
    print("\n| stage (per 250-byte candidate) | µs/msg |")
    print("|---|---|")
    for name, us in results:
        print(f"| {name} | {us:.2f} |")


# ------------------------------------------------------------------------------------------ live

#: Innermost frame of ours -> category. Matched on the function's qualified name as py-spy prints it.
CATEGORIES: dict[str, str] = {
    "Connection.receive_data": "frame parse + unmask + UTF-8",
    "Connection._parse_frames": "frame parse + unmask + UTF-8",
    "Connection._stream_piece": "frame parse + unmask + UTF-8",
    "apply_mask": "frame parse + unmask + UTF-8",
    "ServerConnection.data_received": "transport glue (data_received, events)",
    "Endpoint._handle_events": "transport glue (data_received, events)",
    "SessionSocket.on_text": "on_text + rate limiter",
    "MessageRateLimit.admit": "on_text + rate limiter",
    "TokenBucket.allow": "on_text + rate limiter",
    "Session.handle_text": "session dispatch",
    "Session._send": "session dispatch",
    "parse_client_message": "pydantic validate_json",
    "relayed_candidate_json": "relayed JSON (to_json + concat)",
    "LocalRouter.send": "router.send",
    "SessionDriver.feed": "session dispatch",
    "SessionSocket.deliver": "deliver -> send_text glue",
    "ServerConnection.send_text": "deliver -> send_text glue",
    "ServerConnection._written": "deliver -> send_text glue",
    "Connection.send_text": "send framing (encode + header)",
    "WebSocketServer._flush_dirty": "flush (data_to_send, write-buffer checks)",
    "Endpoint.flush": "flush (data_to_send, write-buffer checks)",
    "Connection.data_to_send": "flush (data_to_send, write-buffer checks)",
}
#: Frames of ours that only start the loop: a sample whose innermost frame of ours is one of these is the loop's.
OUTER = frozenset(("<module>", "main", "run", "serve"))
WRITE_SYSCALL = "transport.write (uvloop/libc/kernel)"
READ_SYSCALL = "socket read (uvloop/libc/kernel)"


def frame_name(frame: str) -> tuple[str, str]:
    """("func", "file") from py-spy's ``func (file:line)``."""
    name, _, where = frame.partition(" (")
    return name, where.rsplit(":", 1)[0]


def categorize(stack: list[str]) -> str:
    """The category of one sample: its innermost frame in signaling/, else what the loop was doing."""
    for depth in range(len(stack) - 1, -1, -1):
        name, where = frame_name(stack[depth])
        if "signaling/" not in where:
            continue
        if name in OUTER:
            break
        category = CATEGORIES.get(name)
        if category is None:
            return f"other ours ({name})"
        if category.startswith("flush"):
            below = ";".join(stack[depth + 1 :]).lower()
            if "write" in below or "send" in below:
                return WRITE_SYSCALL
        return category
    joined = ";".join(stack).lower()
    if "write" in joined or "sendmsg" in joined:  # a write the loop retries from its own callbacks
        return WRITE_SYSCALL
    if "uv__read" in joined or "sock_recv" in joined or "recv" in joined:
        return READ_SYSCALL
    if "epoll" in joined or "select" in joined:
        return "epoll / select"
    return "event loop (other)"


def main_live(opts: argparse.Namespace) -> None:
    from bench.bench_relay import run_load, spawn

    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        sys.exit("py-spy not found: pip install py-spy")
    duration = opts.seconds + 3.0
    with spawn("ours", opts.loop, 0, duration + 120) as (pid, port), tempfile.TemporaryDirectory() as tmp:
        load_args = [opts.load, "--port", str(port), "--server-pid", str(pid), "--pairs", str(opts.pairs)]
        load_args += ["--warmup", "1.5", "--duration", str(opts.seconds + 1.0)]
        load_args += ["--window", str(opts.window)] if opts.load == "saturate" else ["--rate", str(opts.rate)]
        result: dict[str, Any] = {}

        def load() -> None:
            result.update(run_load(load_args, 1, duration + 60))

        import threading

        worker = threading.Thread(target=load)
        worker.start()
        time.sleep(2.0)  # connections up, warm-up under way
        raw = os.path.join(tmp, "stacks.txt")
        cmd = [spy, "record", "--pid", str(pid), "--duration", str(int(opts.seconds)), "--rate", str(opts.rate_hz)]
        cmd += ["--format", "raw", "-o", raw, "--nonblocking"] if opts.nonblocking else ["--format", "raw", "-o", raw]
        if opts.native:
            cmd.append("--native")
        spy_run = subprocess.run(
            ["taskset", "-c", "1", *cmd], capture_output=True, text=True, timeout=opts.seconds + 60, check=False
        )
        worker.join(duration + 90)
        if spy_run.returncode != 0 or not os.path.exists(raw):
            sys.exit(f"py-spy failed:\n{spy_run.stderr[-2000:]}")
        if opts.raw:
            shutil.copyfile(raw, opts.raw)
        counts: collections.Counter[str] = collections.Counter()
        with open(raw) as f:
            for line in f:
                stack_text, _, samples = line.rstrip("\n").rpartition(" ")
                if stack_text:
                    counts[categorize(stack_text.split(";"))] += int(samples)
    total = sum(counts.values())
    us = result.get("srv_us_per_msg", float("nan"))
    what = f"window {opts.window}" if opts.load == "saturate" else f"{opts.rate:g} msgs/s offered"
    print(
        f"\nours:{opts.loop}, {opts.load} ({opts.pairs} pairs, {what}): "
        f"{result.get('msgs_per_s', float('nan')):,.0f} msgs/s, srv {result.get('srv_cores', float('nan')):.2f} "
        f"cores, {us:.2f} µs/msg, cli {result.get('cli_cores', float('nan')):.2f} cores, "
        f"excess {result.get('excess_cores', float('nan')):.2f}; {total} busy samples"
    )
    print("\n| where (innermost frame of ours) | share | ≈ µs/msg |")
    print("|---|---|---|")
    for category, count in counts.most_common():
        share = count / total
        print(f"| {category} | {share:.1%} | {share * us:.2f} |")
    if opts.json:
        common.write_json(opts.json, {"load": result, "samples": dict(counts)}, indent=1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    stages = sub.add_parser("stages")
    stages.add_argument("--number", type=int, default=20_000, help="messages per timing repeat")
    stages.add_argument("--batch", default="1,8", help="frames per read for the parse and data_received rows")
    live = sub.add_parser("live")
    live.add_argument("--loop", choices=common.LOOPS, default="uvloop")
    live.add_argument("--seconds", type=float, default=6.0)
    live.add_argument("--rate-hz", type=int, default=250)
    live.add_argument("--native", action="store_true", help="sample native frames too (uvloop, libc, pydantic)")
    live.add_argument("--nonblocking", action="store_true", help="py-spy --nonblocking (does not pause the server)")
    live.add_argument("--pairs", type=int, default=50)
    live.add_argument("--window", type=int, default=20)
    live.add_argument("--load", choices=("saturate", "rate"), default="saturate", help="relay_load's mode")
    live.add_argument("--rate", type=float, default=20_000.0, help="offered msgs/s with --load rate")
    live.add_argument("--json", metavar="PATH")
    live.add_argument("--raw", metavar="PATH", help="keep py-spy's raw stacks here")
    opts = parser.parse_args(argv)
    if opts.mode == "stages":
        opts.batch = [int(x) for x in opts.batch.split(",")]
        if not (1000 <= opts.number <= 1_000_000 and all(1 <= k <= 64 for k in opts.batch)):
            parser.error("number must be 1000..1e6 and batch sizes 1..64")
        main_stages(opts)
    else:
        if not 1 <= opts.seconds <= 60:
            parser.error("seconds must be 1..60")
        with contextlib.suppress(KeyboardInterrupt):
            main_live(opts)


if __name__ == "__main__":
    main()

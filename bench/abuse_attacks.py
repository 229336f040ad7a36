"""The attacker side of bench_abuse.py: one attack per run, for a given time, then a one-line JSON report.

Run: python -m bench.abuse_attacks ATTACK --port P [--seconds S] [--conns N]

Every attack comes from many loopback source addresses (127.0.X.Y), as from many machines, so that what is
measured is each per-connection defence, not only the per-address limits (which alone would stop most of these
from one address). The report says how many attacking connections were opened, how many the server closed,
with which close codes or HTTP statuses, and how long it took to close them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import time
from collections import Counter
from typing import Any

from bench import common


class Tally:
    """What happened to the attacking connections."""

    def __init__(self) -> None:
        self.opened = 0
        self.refused: Counter[str] = Counter()  # HTTP status of handshakes refused
        self.closed: Counter[str] = Counter()  # close code the server sent (or "eof")
        self.close_after: list[float] = []  # seconds from the start of the attack on the connection to its close
        self.sent_bytes = 0

    def report(self) -> dict[str, Any]:
        after = sorted(self.close_after)
        return {
            "opened": self.opened,
            "refused": dict(self.refused),
            "closed": dict(self.closed),
            "close_after_p50": after[len(after) // 2] if after else None,
            "close_after_max": after[-1] if after else None,
            "sent_mb": round(self.sent_bytes / 1e6, 2),
        }


TALLY = Tally()


def source(i: int) -> str:
    """The i-th loopback source address: 127.0.1.1, 127.0.1.2, ... (250 per /24)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A client frame with the zero mask (valid, and free to build in a flood)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0xFE, n)
    else:
        head = struct.pack("!BBQ", b0, 0xFF, n)
    return head + b"\0\0\0\0" + payload


REQUEST = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: its first byte (FIN, opcode) and its payload."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0, await reader.readexactly(n)


class Attacker:
    """One raw connection: it writes what the attack says and watches for the server's close."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = asyncio.Event()
        self.started = time.monotonic()

    @classmethod
    async def open(cls, port: int, i: int, *, upgrade: bool = True) -> Attacker | None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source(i), 0))
        except OSError:
            TALLY.refused["connect-failed"] += 1
            return None
        attacker = cls(reader, writer)
        if upgrade:
            writer.write(REQUEST.format(port=port).encode())
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError):
                TALLY.refused["no-answer"] += 1
                writer.close()
                return None
            status = head.split(b" ", 2)[1].decode()
            if status != "101":
                TALLY.refused[status] += 1
                writer.close()
                return None
        TALLY.opened += 1
        asyncio.get_running_loop().create_task(attacker._watch())
        return attacker

    async def _watch(self) -> None:
        """Read (and drop) what the server sends until it closes; note the close code."""
        code = "eof"
        try:
            while True:
                b0, payload = await read_frame(self.reader)
                if b0 & 0x0F == 0x8:
                    code = str(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else "1005"
                    break
        except (OSError, asyncio.IncompleteReadError):
            pass
        TALLY.closed[code] += 1
        TALLY.close_after.append(time.monotonic() - self.started)
        self.closed.set()
        self.writer.close()

    def write(self, data: bytes) -> bool:
        if self.closed.is_set() or self.writer.is_closing():
            return False
        self.writer.write(data)
        TALLY.sent_bytes += len(data)
        return True

    async def drain(self) -> None:
        with contextlib.suppress(OSError):
            await self.writer.drain()


async def many(port: int, count: int, *, upgrade: bool = True) -> list[Attacker]:
    opened = await asyncio.gather(*(Attacker.open(port, i, upgrade=upgrade) for i in range(count)))
    return [a for a in opened if a is not None]


async def keep_sending(attackers: list[Attacker], data: bytes, seconds: float, pause: float = 0.1) -> None:
    """Every attacker writes ``data`` again every ``pause`` seconds, for ``seconds`` or until all are closed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(not a.closed.is_set() for a in attackers):
        for a in attackers:
            a.write(data)
        await asyncio.sleep(pause)


async def until(seconds: float, attackers: list[Attacker]) -> None:
    """Wait until the time is up or every attacker was closed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await asyncio.gather(*(a.closed.wait() for a in attackers))


# ------------------------------------------------------------------------------------------------ the attacks


async def slowloris(port: int, seconds: float, conns: int) -> None:
    """Thousands of request heads, one byte a second, never finished."""
    attackers = await many(port, conns, upgrade=False)
    head = REQUEST.format(port=port).encode()[:-2]
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and any(not a.closed.is_set() for a in attackers):
        for a in attackers:
            a.write(head[i % len(head) : i % len(head) + 1])
        i += 1
        await asyncio.sleep(1.0)


async def unfinished_fragments(port: int, seconds: float, conns: int) -> None:
    """A text frame with FIN=0, then 1-byte continuations, never the final frame (pings are answered by the
    reader task's reading, which is all a keepalive needs)."""
    attackers = await many(port, conns)
    for a in attackers:
        a.write(frame(0x1, b"x", fin=False))
    await keep_sending(attackers, frame(0x0, b"x", fin=False) * 200, seconds)


async def empty_fragment_flood(port: int, seconds: float, conns: int) -> None:
    """Zero-length continuation frames as fast as the socket takes them."""
    attackers = await many(port, conns)
    burst = frame(0x0, b"", fin=False) * 5000
    for a in attackers:
        a.write(frame(0x1, b"", fin=False))
    await _flood(attackers, burst, seconds)


async def ping_flood(port: int, seconds: float, conns: int) -> None:
    """Pings as fast as the socket takes them; the pongs are read (the reader task drops them)."""
    attackers = await many(port, conns)
    await _flood(attackers, frame(0x9, b"p") * 5000, seconds)


async def ping_flood_no_read(port: int, seconds: float, conns: int) -> None:
    """Pings as fast as the socket takes them, from a client that never reads its pongs."""
    attackers = []
    for i in range(conns):
        a = await Attacker.open(port, i)
        if a is not None:
            a.reader._limit = 1 << 30  # type: ignore[attr-defined]  # never matters: nothing reads
            attackers.append(a)
    burst = frame(0x9, b"p" * 100) * 2000
    await _flood(attackers, burst, seconds)


async def _flood(attackers: list[Attacker], burst: bytes, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(not a.closed.is_set() for a in attackers):
        for a in attackers:
            a.write(burst)
        await asyncio.gather(*(a.drain() for a in attackers))
        await asyncio.sleep(0)


async def many_fragments(port: int, seconds: float, conns: int) -> None:
    """Messages of 65,000 one-byte fragments, 10 a second per connection: under the rate limit, each was ~96 ms
    of CPU on an earlier server."""
    attackers = await many(port, conns)
    message = frame(0x1, b"{", fin=False) + frame(0x0, b" ", fin=False) * 64_998 + frame(0x0, b"}")
    await keep_sending(attackers, message, seconds)


async def refused_flood(port: int, seconds: float, conns: int) -> None:
    """Joined, then 2,000 messages a second, far over the rate limit (each one used to be parsed to find its id)."""
    attackers = await many(port, conns)
    for i, a in enumerate(attackers):
        a.write(frame(0x1, json.dumps({"type": "join", "room": f"flood{i}"}).encode()))
    text = frame(0x1, json.dumps({"type": "message", "data": "x" * 1000, "id": 1}).encode())
    await keep_sending(attackers, text * 200, seconds)


async def deep_nesting(port: int, seconds: float, conns: int) -> None:
    """Rate-limited messages nested 5,000 deep (an earlier server raised RecursionError on them: 1011)."""
    attackers = await many(port, conns)
    nested = frame(0x1, b"[" * 5000 + b"]" * 5000)
    await keep_sending(attackers, nested * 100, seconds)


async def byte_burst(port: int, seconds: float, conns: int) -> None:
    """A room member broadcasts its whole burst of ~65 KB messages to the probe room (honest room-mates read)."""
    attackers = await many(port, conns)
    for a in attackers:
        a.write(frame(0x1, json.dumps({"type": "join", "room": "probe"}).encode()))
    big = frame(0x1, json.dumps({"type": "message", "data": "z" * 64_000}).encode())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(not a.closed.is_set() for a in attackers):
        for a in attackers:
            a.write(big * 200)
            await a.drain()
        await asyncio.sleep(0.5)


async def slow_consumer(port: int, seconds: float, conns: int) -> None:
    """Room members of the probe room that never read what the room sends them."""
    attackers = []
    for i in range(conns):
        a = await Attacker.open(port, i)
        if a is not None:
            attackers.append(a)
            a.write(frame(0x1, json.dumps({"type": "join", "room": "probe"}).encode()))
    # They never read: the _watch task is cancelled so the socket's receive buffer fills up.
    await until(seconds, attackers)


async def never_join(port: int, seconds: float, conns: int) -> None:
    """Upgraded sockets that never join, from many addresses: they hold slots until the join deadline."""
    attackers = await many(port, conns)
    await until(seconds, attackers)


def _patch_slow_consumer() -> None:
    async def _no_watch(self: Attacker) -> None:
        await asyncio.sleep(3600)

    Attacker._watch = _no_watch  # type: ignore[method-assign]


async def run(name: str, port: int, seconds: float, conns: int) -> dict[str, Any]:
    attack = globals()[name.replace("-", "_")]
    if name == "slow-consumer":
        _patch_slow_consumer()
    started = time.monotonic()
    await attack(port, seconds, conns)
    return {"attack": name, "seconds": round(time.monotonic() - started, 2), **TALLY.report()}


NAMES = (
    "slowloris",
    "unfinished-fragments",
    "empty-fragment-flood",
    "ping-flood",
    "ping-flood-no-read",
    "many-fragments",
    "refused-flood",
    "deep-nesting",
    "byte-burst",
    "slow-consumer",
    "never-join",
)


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("attack", choices=NAMES)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--conns", type=int, default=10)
    args = parser.parse_args()
    common.run_bounded(run(args.attack, args.port, args.seconds, args.conns), "asyncio", args.seconds + 60)
    os._exit(0)  # attackers left open are the server's problem, not a reason to wait


if __name__ == "__main__":
    main()

"""The attacker side of bench_cluster_abuse.py: one attack on a two-node cluster per run, then a one-line JSON report.

Run: python -m bench.cluster_attacks ATTACK --port P1 --port-b P2 [--seconds S]

Once its connections are open and joined it prints ``READY`` and waits for a line on stdin before attacking for
``S`` seconds, so that the bench times the attack apart from its set-up (which the per-address connection rate
makes last a few seconds for one address).

Attackers are raw WebSocket clients (zero mask, no library) bound to loopback source addresses: ``source(i)`` of
bench/abuse_attacks.py (127.0.1.1, 127.0.1.2, ...), so that the server sees each as its own client address, as
from a botnet, or one address for all of them, as from an office behind NAT. Connections refused for their
address's rate (429) are tried again a moment later, as a patient attacker would: the per-address limits (64
connections, 10 new per second, a burst of 30) shape the attacks rather than stop them.

- ``fanout``: from one address, 7 rooms, each with 1 sender on node 1 and 7 receivers on node 2 (56 connections).
  Every ~4 s (the byte burst refills at 256 KiB/s) each sender spends its burst at once: 16 broadcasts of 64,000
  bytes, 7 copies of each for node 2. The receivers never read.
- ``fanout-max``: the same with all that one address may open on each node: 16 rooms of 4 senders (node 1) and 4
  receivers (node 2), 64 connections on each node; 4 copies of each broadcast for node 2, 256 MB a round.
- ``fanout-botnet``: 30 addresses, one connection each, in 5 resumable rooms of 6 (3 members on each node);
  each member broadcasts at its byte rate (4 broadcasts of 64,000 bytes a second, the 30 taking turns evenly:
  a sustained flood, not a burst), and reads what the others send.
- ``fanout-botnet-small``: the same at the message rate: 50 broadcasts of 5,000 bytes a second each.
- ``ghosts``: every 0.1 s, from one address, a connection (to node 1 and node 2 in turn) joins its own new room
  resumable, sends itself 16 messages of 64,000 bytes (its byte burst, ~1 MiB), reads them back, and resets the
  TCP connection (no close frame): a session left in its grace period with its kept messages.
- ``ghosts-spread``: the same, each ghost from an address of its own.
- ``resume-guess``: a victim (resumable, in a room with a partner on the other node) drops its connection and
  resumes with its real token, once as it is (the control) and once after 12 joins with made-up ``resume`` tokens
  sent to each node from its own address (another address: a NAT's neighbour).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench import common
from bench.abuse_attacks import REQUEST, frame, read_frame, source

#: A broadcast that spends 1/16 of the default byte burst (1 MiB): 16 of them fit, the 17th is refused.
BIG = 64_000
#: Messages one connection sends at once: its whole byte burst.
BURST = 16
#: Seconds for the default byte rate (256 KiB/s) to refill that burst.
REFILL = 4.0
STARTED = time.monotonic()
ERROR = b'{"type":"error"'
ERROR_CODE = re.compile(rb'\{"type":"error","code":"([a-z-]+)"')


class Tally:
    """What happened to the attacking connections, and what the attack itself reports."""

    def __init__(self) -> None:
        self.opened = 0
        self.refused: Counter[str] = Counter()  # HTTP status of refused handshakes, after the retries
        self.retried = 0  # handshakes refused (429) and tried again
        self.closed: Counter[str] = Counter()  # close code the server sent, "eof" for a drop without one
        self.errors: Counter[str] = Counter()  # error codes the server answered with
        self.sent_bytes = 0
        self.received_bytes = 0
        self.addresses: set[str] = set()
        self.extra: dict[str, Any] = {}

    def report(self) -> dict[str, Any]:
        return {
            "opened": self.opened,
            "addresses": len(self.addresses),
            "refused": dict(self.refused),
            "retried": self.retried,
            "closed": dict(self.closed),
            "errors": dict(self.errors),
            "sent_mb": round(self.sent_bytes / 1e6, 2),
            "received_mb": round(self.received_bytes / 1e6, 2),
            **self.extra,
        }


TALLY = Tally()


async def ready() -> None:
    """The attack is set up: say so on stdout, and start when the bench says so (a line on stdin)."""
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    TALLY.extra["setup_seconds"] = round(time.monotonic() - STARTED, 2)
    TALLY.extra["cpu_s"] = -time.process_time()


class Raw:
    """One raw client connection from a given source address: send JSON, read messages, drop it with a reset."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.close_code: str | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def open(cls, port: int, address: str, *, patience: float = 10.0) -> Raw | None:
        """Connect and upgrade; a 429 (the address's rate) is tried again for up to ``patience`` seconds."""
        deadline = time.monotonic() + patience
        while True:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(address, 0), limit=1 << 20
                )
            except OSError:
                TALLY.refused["connect-failed"] += 1
                return None
            writer.write(REQUEST.format(port=port).encode())
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = head.split(b" ", 2)[1].decode()
            except (OSError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError, IndexError):
                status = "no-answer"
            if status == "101":
                TALLY.opened += 1
                TALLY.addresses.add(address)
                return cls(reader, writer)
            writer.close()
            if status == "429" and time.monotonic() < deadline:
                TALLY.retried += 1
                await asyncio.sleep(0.12)
                continue
            TALLY.refused[status] += 1
            return None

    def send(self, message: dict[str, Any]) -> None:
        data = frame(0x1, json.dumps(message, separators=(",", ":")).encode())
        if not self.closed.is_set() and not self.writer.is_closing():
            self.writer.write(data)
            TALLY.sent_bytes += len(data)

    async def recv(self) -> dict[str, Any] | None:
        """The next text message, parsed; None once the server closed (its code noted). Pings are answered."""
        parts: list[bytes] = []
        try:
            while True:
                b0, payload = await read_frame(self.reader)
                TALLY.received_bytes += len(payload) + 2
                opcode = b0 & 0x0F
                if opcode == 0x8:
                    self._closed(str(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else "1005")
                    return None
                if opcode == 0x9:
                    self.writer.write(frame(0xA, payload))
                    continue
                if opcode in (0x1, 0x0):
                    parts.append(payload)
                    if b0 & 0x80:
                        message: dict[str, Any] = json.loads(b"".join(parts))
                        if message.get("type") == "error":
                            TALLY.errors[str(message.get("code"))] += 1
                        return message
        except (OSError, asyncio.IncompleteReadError):
            self._closed("eof")
            return None

    async def expect(self, kind: str, within: float = 10.0) -> dict[str, Any] | None:
        """The next message of type ``kind`` (others dropped); None on close or after ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while (message := await self.recv()) is not None:
                    if message.get("type") == kind:
                        return message
        return None

    async def join(self, room: str, **fields: Any) -> dict[str, Any] | None:
        self.send({"type": "join", "room": room, **fields})
        return await self.expect("welcome")

    async def read_all(self) -> None:
        """Read and drop everything until the server closes, as cheaply as possible (no framing: the attacker
        shares the machine with the server); the close code is read from the last bytes."""
        tail = b""
        with contextlib.suppress(OSError):
            while data := await self.reader.read(1 << 20):
                TALLY.received_bytes += len(data)
                tail = (tail + data)[-128:]
                if ERROR in data:  # the server's own encoding: {"type":"error","code":"..."
                    for code in ERROR_CODE.findall(data):
                        TALLY.errors[code.decode()] += 1
        self._closed(close_code(tail))

    def _closed(self, code: str) -> None:
        if self.close_code is None:
            self.close_code = code
            TALLY.closed[code] += 1
        self.closed.set()
        self.writer.close()

    def reset(self) -> None:
        """Drop the connection with a TCP reset: no close frame, no FIN (SO_LINGER 0)."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        self.closed.set()


def close_code(tail: bytes) -> str:
    """The code of the close frame that ends ``tail`` (server frames are unmasked), or "eof" when none does."""
    for i in range(len(tail) - 2, -1, -1):
        if tail[i] == 0x88 and tail[i + 1] == len(tail) - i - 2:
            return str(struct.unpack("!H", tail[i + 2 : i + 4])[0]) if tail[i + 1] >= 2 else "1005"
    return "eof"


def big_broadcast(n: int) -> dict[str, Any]:
    return {"type": "message", "data": {"n": n, "pad": "z" * BIG}}


async def opened(ports: list[int], addresses: list[str], count: int, node: Callable[[int], int]) -> list[Raw]:
    """``count`` connections, the i-th from ``addresses[i % len]`` to ``ports[node(i)]``."""
    out = await asyncio.gather(*(Raw.open(ports[node(i)], addresses[i % len(addresses)]) for i in range(count)))
    return [r for r in out if r is not None]


# ------------------------------------------------------------------------------------------------ the attacks


async def _fanout(ports: list[int], seconds: float, rooms: int, senders: int, receivers: int) -> None:
    """One address: ``rooms`` rooms of ``senders`` senders on node 1 and ``receivers`` receivers on node 2 that
    never read; every sender spends its byte burst every 4 s."""
    address = [source(0)]
    listening, sending = await asyncio.gather(  # each node has its own rate per address: both at once
        opened(ports, address, rooms * receivers, lambda i: 1), opened(ports, address, rooms * senders, lambda i: 0)
    )
    for i, r in enumerate(listening):
        await r.join(f"fan{i % rooms}", name=f"rcv{i}")
    for i, s in enumerate(sending):
        await s.join(f"fan{i % rooms}", name=f"snd{i}")
    # From here on the receivers read nothing: what the room sends them piles up in their sockets and the server.
    for s in sending:
        asyncio.get_running_loop().create_task(s.read_all())
    await ready()
    await _bursts(sending, seconds)
    TALLY.extra["receivers"] = len(listening)
    TALLY.extra["senders"] = len(sending)


async def fanout(ports: list[int], seconds: float) -> None:
    """The reported attack: 7 rooms of 1 sender and 7 receivers (56 connections; 49 MB for node 2 a round)."""
    await _fanout(ports, seconds, 7, 1, 7)


async def fanout_max(ports: list[int], seconds: float) -> None:
    """All one address may open: 16 rooms of 4 senders and 4 receivers (64 connections on each node; 256 MB for
    node 2 a round)."""
    await _fanout(ports, seconds, 16, 4, 4)


async def _bursts(senders: list[Raw], seconds: float) -> None:
    """Every sender spends its byte burst at once, again every REFILL seconds."""
    deadline = time.monotonic() + seconds
    n = rounds = 0
    while time.monotonic() < deadline and any(not s.closed.is_set() for s in senders):
        for s in senders:
            for _ in range(BURST):
                n += 1
                s.send(big_broadcast(n))
        rounds += 1
        await asyncio.gather(*(_drain(s) for s in senders))
        await asyncio.sleep(max(0.0, min(REFILL, deadline - time.monotonic())))
    TALLY.extra["broadcasts"] = n
    TALLY.extra["rounds"] = rounds


async def _sustained(senders: list[Raw], seconds: float, rate: float, size: int) -> None:
    """Every sender broadcasts ``rate`` messages of ``size`` bytes a second, the senders taking turns evenly."""
    period = 1 / rate / len(senders)
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds and any(not s.closed.is_set() for s in senders):
        senders[n % len(senders)].send({"type": "message", "data": {"n": n, "pad": "s" * size}})
        n += 1
        await asyncio.sleep(max(0.0, started + n * period - time.monotonic()))
    TALLY.extra["broadcasts"] = n


async def _drain(r: Raw) -> None:
    with contextlib.suppress(OSError):
        await r.writer.drain()


async def _botnet(ports: list[int], seconds: float, rate: float, size: int) -> None:
    addresses = [source(i) for i in range(30)]
    members = await opened(ports, addresses, 30, lambda i: i % 2)
    for i, m in enumerate(members):
        await m.join(f"bot{i // 6}", name=f"bot{i}", resumable=True)
    for m in members:
        asyncio.get_running_loop().create_task(m.read_all())
    await ready()
    await _sustained(members, seconds, rate, size)


async def fanout_botnet(ports: list[int], seconds: float) -> None:
    """30 addresses, 5 resumable rooms of 6 spanning both nodes, every member broadcasting at its byte rate in
    the biggest messages: 4 a second of 64,000 bytes."""
    await _botnet(ports, seconds, BURST / REFILL, BIG)


async def fanout_botnet_small(ports: list[int], seconds: float) -> None:
    """The same at the message rate: 50 broadcasts a second of 5,000 bytes (the byte rate too)."""
    await _botnet(ports, seconds, 50.0, 5_000)


async def _ghost(port: int, address: str, i: int) -> str:
    """One ghost: join resumable, send itself ~1 MiB, read it back, reset. Returns how it ended."""
    ghost = await Raw.open(port, address, patience=0.5)
    if ghost is None:
        return "refused"
    try:
        welcome = await ghost.join(f"ghost{i}", name=f"ghost{i}", resumable=True)
        if welcome is None:
            return "no-welcome"
        for n in range(BURST):
            ghost.send({"type": "message", "to": welcome["peer"], "data": {"n": n, "pad": "g" * BIG}})
        got = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while got < BURST and (message := await ghost.recv()) is not None:
                    got += message.get("type") == "message"
        TALLY.extra.setdefault("echoed_messages", 0)
        TALLY.extra["echoed_messages"] += got
        return "done" if got == BURST else f"short ({got})"
    finally:
        ghost.reset()


async def _ghosts(ports: list[int], seconds: float, address: Callable[[int], str]) -> None:
    await ready()
    tasks = []
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < seconds:
        tasks.append(asyncio.get_running_loop().create_task(_ghost(ports[i % 2], address(i), i)))
        i += 1
        await asyncio.sleep(max(0.0, started + i * 0.1 - time.monotonic()))
    ends = Counter(await asyncio.gather(*tasks))
    TALLY.extra["ghosts"] = dict(ends)


async def ghosts(ports: list[int], seconds: float) -> None:
    """From one address, a ghost every 0.1 s."""
    await _ghosts(ports, seconds, lambda i: source(0))


async def ghosts_spread(ports: list[int], seconds: float) -> None:
    """A ghost every 0.1 s, each from an address of its own."""
    await _ghosts(ports, seconds, source)


async def _victim_resumes(ports: list[int], address: str, room: str, guesses: int) -> dict[str, Any]:
    """A victim on node 1 (partner on node 2) drops its connection and resumes on node 1, after ``guesses`` joins
    with made-up tokens sent to each node from its own address."""
    victim = await Raw.open(ports[0], address)
    partner = await Raw.open(ports[1], address)
    if victim is None or partner is None:
        return {"resumed": None, "why": "could not connect"}
    welcome = await victim.join(room, name="victim", resumable=True)
    joined = await partner.join(room, name="partner", resumable=True)
    if welcome is None or joined is None:
        return {"resumed": None, "why": "could not join"}
    # A few messages from the partner, so that the resume has something to replay from last_seq.
    for n in range(3):
        partner.send({"type": "message", "to": welcome["peer"], "data": {"n": n}})
    last_seq = 0
    while last_seq < 4:  # peer-joined (1), then the 3 messages
        message = await victim.expect("message", 5)
        if message is None:
            break
        last_seq = int(message["seq"])
    answers: Counter[str] = Counter()
    for port in ports:
        guesser = await Raw.open(port, address)
        if guesser is None:
            answers["refused"] += guesses
            continue
        for k in range(guesses):
            bogus = secrets.token_urlsafe(24)
            answer = await guesser.join(f"guess{k}", resume=bogus, last_seq=0, resumable=True)
            answers["no welcome" if answer is None else "resumed" if answer.get("resumed") else "fresh join"] += 1
            guesser.send({"type": "leave"})
        guesser.reset()
    victim.reset()
    await asyncio.sleep(0.2)
    again = await Raw.open(ports[0], address)
    if again is None:
        return {"resumed": None, "why": "could not reconnect", "guesses": dict(answers)}
    answer = await again.join(room, resume=welcome["resume"], last_seq=last_seq, resumable=True)
    same = bool(answer and answer.get("resumed") and answer.get("peer") == welcome["peer"])
    for r in (again, partner):
        r.reset()
    return {"resumed": same, "guesses": dict(answers), "last_seq": last_seq}


async def resume_guess(ports: list[int], seconds: float) -> None:
    await ready()
    started = time.monotonic()
    TALLY.extra["control"] = await _victim_resumes(ports, source(0), "victim0", guesses=0)
    TALLY.extra["victim"] = await _victim_resumes(ports, source(1), "victim1", guesses=12)
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))


ATTACKS = {
    "fanout": fanout,
    "fanout-max": fanout_max,
    "fanout-botnet": fanout_botnet,
    "fanout-botnet-small": fanout_botnet_small,
    "ghosts": ghosts,
    "ghosts-spread": ghosts_spread,
    "resume-guess": resume_guess,
}
NAMES = tuple(ATTACKS)


async def run(name: str, ports: list[int], seconds: float) -> dict[str, Any]:
    await ATTACKS[name](ports, seconds)
    TALLY.extra["cpu_s"] = round(TALLY.extra.get("cpu_s", 0.0) + time.process_time(), 2)  # since READY
    took = time.monotonic() - STARTED - TALLY.extra.get("setup_seconds", 0.0)
    return {"attack": name, "seconds": round(took, 2), **TALLY.report()}


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("attack", choices=NAMES)
    parser.add_argument("--port", type=int, required=True, help="node 1")
    parser.add_argument("--port-b", type=int, required=True, help="node 2")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    common.run_bounded(run(args.attack, [args.port, args.port_b], args.seconds), "uvloop", args.seconds + 60)
    os._exit(0)  # attackers left open are the server's problem, not a reason to wait


if __name__ == "__main__":
    main()

"""Frame parse + unmask + UTF-8 decode throughput, in process, against the `websockets` library's own parser.

Run: python -m bench.bench_parse [--runs N] [--quick] [--text mixed|ascii] [--seed S] [--json PATH]

The input is a stream of client-to-server masked text frames, each with a fresh random 4-byte mask,
carrying random-ish text of exactly 250 B, 4 KiB or 64 KiB: mostly ASCII words, with about one word in
twenty non-ASCII UTF-8 (2- to 4-byte sequences) unless ``--text ascii``. The stream is cut into 64 KiB chunks
before timing, to imitate socket reads, and every parser turns each message into a validated ``str``:

- ``ours``: ``signaling.ws.connection.Connection(Side.SERVER)`` opened by a real handshake, then
  ``receive_data(chunk)``, collecting ``TextMessage.data``;
- ``ours (no numpy)``: the same with ``signaling.ws.mask.HAVE_NUMPY = False`` (the pure-Python fallback);
- ``websockets``: ``websockets.server.ServerProtocol`` after a handshake, ``receive_data(chunk)`` then
  ``events_received()``, decoding each frame with ``bytes.decode("utf-8")`` (its protocol layer does not
  validate UTF-8; its connection layer does exactly this). Its C ``apply_mask`` must be active.

Timing is CPU time (``time.process_time``) of the whole feed; each figure is the median of N runs in this one
process, with the parsers interleaved run by run so that noise from a shared machine spreads over all of them.
Every parser's output is checked against the expected messages. A second table times
``signaling.ws.mask.apply_mask`` alone.
"""

from __future__ import annotations

import gc
import importlib
import platform
import random
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.server import ServerProtocol
from websockets.version import version as websockets_version

from bench import common
from signaling.ws import mask as ws_mask
from signaling.ws.connection import Connection, Side
from signaling.ws.events import RequestReceived, TextMessage

ws_c_apply_mask: Callable[[bytes, bytes], bytes] | None
try:
    ws_c_apply_mask = importlib.import_module("websockets.speedups").apply_mask
except ImportError:  # pragma: no cover - a websockets build without its C extension
    ws_c_apply_mask = None

CHUNK = 64 * 1024
#: (payload bytes, messages) for a full run; --quick divides the counts by 10.
SIZES = ((250, 200_000), (4 * 1024, 30_000), (64 * 1024, 2_000))
#: Distinct payloads per size; each frame still gets its own mask, so no two frames are alike.
POOL = 256
#: Share of non-ASCII words in the text, per --text.
TEXT_KINDS = {"mixed": 0.05, "ascii": 0.0}

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: localhost:8765\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

_WORDS = (
    "candidate udp tcp typ host srflx relay raddr rport generation ufrag network-cost sdpMid sdpMLineIndex "
    "offer answer ice-ufrag ice-pwd fingerprint sha-256 setup actpass mid rtpmap opus/48000/2 VP8/90000 "
    'a=group:BUNDLE m=audio m=video c=IN IP4 0.0.0.0 203.0.113.45 192.168.1.20 51234 9 {} [] : , " the of '
    "room peer join leave signal message hello world lorem ipsum dolor sit amet consectetur adipiscing elit"
)
_ASCII_WORDS = _WORDS.split()
_UTF8_WORDS = ("café", "naïve", "Grüße", "€", "½", "日本語", "Привет", "ελληνικά", "🙂", "ñandú", "Ωmega")

#: Where a parser hands each message: ``list.append`` for the checked run, a one-slot deque when timed (the
#: application drops each message after use, so 100+ MB of results never pile up and skew the allocator).
Sink = Callable[[str], object]
Parser = Callable[[list[bytes], Sink], None]


# --------------------------------------------------------------------------------------------- input stream


def make_text(rng: random.Random, size: int, utf8_share: float = 0.05) -> str:
    """Random words, mostly ASCII, padded with ASCII letters to exactly ``size`` UTF-8 bytes."""
    words: list[str] = []
    used = 0
    while True:
        word = rng.choice(_UTF8_WORDS) if rng.random() < utf8_share else rng.choice(_ASCII_WORDS)
        cost = len(word.encode("utf-8")) + (1 if words else 0)
        if used + cost > size:
            break
        words.append(word)
        used += cost
    text = " ".join(words)
    text += "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size - used))
    assert len(text.encode("utf-8")) == size
    return text


def build_stream(rng: random.Random, size: int, count: int, utf8_share: float = 0.05) -> tuple[list[bytes], list[str]]:
    """The 64 KiB chunks of ``count`` masked text frames, and the texts they carry, in order."""
    # Independent of the code under test when websockets' C mask is there.
    masker = ws_mask.mask_bigint if ws_c_apply_mask is None else ws_c_apply_mask
    pool = [make_text(rng, size, utf8_share) for _ in range(min(POOL, count))]
    encoded = [t.encode("utf-8") for t in pool]
    header = common.text_frame_header(size)
    parts: list[bytes] = []
    expected: list[str] = []
    for _ in range(count):
        i = rng.randrange(len(pool))
        key = rng.randbytes(4)
        parts += (header, key, masker(encoded[i], key))
        expected.append(pool[i])
    stream = b"".join(parts)
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)], expected


# -------------------------------------------------------------------------------------------------- parsers


def open_ours() -> Connection:
    conn = Connection(Side.SERVER, max_message_size=1 << 24)
    events = conn.receive_data(HANDSHAKE)
    request = next(e.request for e in events if isinstance(e, RequestReceived))
    conn.accept(request)
    assert conn.data_to_send().startswith(b"HTTP/1.1 101 ")
    return conn


def parse_ours(chunks: list[bytes], sink: Sink) -> None:
    receive = open_ours().receive_data
    for chunk in chunks:
        for event in receive(chunk):
            if type(event) is not TextMessage:
                raise AssertionError(f"unexpected event {event!r}")
            sink(event.data)


@contextmanager
def numpy_disabled() -> Iterator[None]:
    saved = ws_mask.HAVE_NUMPY
    ws_mask.HAVE_NUMPY = False
    try:
        yield
    finally:
        ws_mask.HAVE_NUMPY = saved


def parse_ours_no_numpy(chunks: list[bytes], sink: Sink) -> None:
    with numpy_disabled():
        parse_ours(chunks, sink)


def open_websockets() -> ServerProtocol:
    proto = ServerProtocol(max_size=None)
    proto.receive_data(HANDSHAKE)
    (request,) = proto.events_received()
    assert isinstance(request, WsRequest)
    response = proto.accept(request)
    assert response.status_code == 101
    proto.send_response(response)
    proto.data_to_send()
    return proto


def parse_websockets(chunks: list[bytes], sink: Sink) -> None:
    proto = open_websockets()
    receive = proto.receive_data
    events_received = proto.events_received
    for chunk in chunks:
        receive(chunk)
        for frame in events_received():
            if type(frame) is not Frame or not frame.fin or frame.opcode is not Opcode.TEXT:
                raise AssertionError(f"unexpected event {frame!r}")
            sink(frame.data.decode("utf-8"))  # type: ignore[union-attr]  # bytes, never a memoryview


PARSERS: dict[str, Parser] = {
    "ours": parse_ours,
    "ours (no numpy)": parse_ours_no_numpy,
    "websockets": parse_websockets,
}


# -------------------------------------------------------------------------------------------------- timing


@dataclass
class Result:
    name: str
    size: int
    messages: int
    runs: list[float] = field(default_factory=list)  # CPU seconds per run

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.median

    @property
    def mb_per_s(self) -> float:
        return self.messages * self.size / self.median / 1e6

    @property
    def spread(self) -> float:
        """Half the max-min spread, relative to the median (the anchors' "±")."""
        return common.relative_spread(self.runs)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.update(
            median_s=self.median,
            msgs_per_s=self.msgs_per_s,
            mb_per_s=self.mb_per_s,
            spread=self.spread,
            msgs_per_s_min=self.messages / max(self.runs),
            msgs_per_s_max=self.messages / min(self.runs),
        )
        return d


def time_once(parser: Parser, chunks: list[bytes]) -> tuple[float, str | None]:
    last: deque[str] = deque(maxlen=1)
    gc.collect()
    t0 = time.process_time()
    parser(chunks, last.append)
    t1 = time.process_time()
    return t1 - t0, last[0] if last else None


def bench_parsers(rng: random.Random, runs: int, scale: int, names: list[str], utf8_share: float) -> list[Result]:
    results: list[Result] = []
    for size, full_count in SIZES:
        count = max(1, full_count // scale)
        chunks, expected = build_stream(rng, size, count, utf8_share)
        by_name = {name: Result(name, size, count) for name in names}
        for name in names:  # one untimed run each: warm-up, and a check of every message
            out: list[str] = []
            PARSERS[name](chunks, out.append)
            if out != expected:
                raise SystemExit(f"{name} at {size} B: wrong output ({len(out)} of {count} messages)")
            del out
        for run in range(runs):
            k = run % len(names)  # rotate the order, so no parser always runs first after a new stream
            for name in names[k:] + names[:k]:
                elapsed, last = time_once(PARSERS[name], chunks)
                if last != expected[-1]:
                    raise SystemExit(f"{name} at {size} B: wrong last message")
                by_name[name].runs.append(elapsed)
        results += by_name.values()
        del chunks, expected
    return results


@dataclass
class MaskResult:
    name: str
    size: int
    calls: int
    runs: list[float] = field(default_factory=list)

    @property
    def us_per_call(self) -> float:
        return statistics.median(self.runs) / self.calls * 1e6

    @property
    def gb_per_s(self) -> float:
        return self.size / (self.us_per_call * 1e3)

    @property
    def spread(self) -> float:
        return common.relative_spread(self.runs)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.update(us_per_call=self.us_per_call, gb_per_s=self.gb_per_s, spread=self.spread)
        return d


def bench_mask(rng: random.Random, runs: int, quick: bool) -> list[MaskResult]:
    impls: dict[str, tuple[Callable[[bytes, bytes], bytes], bool]] = {
        "ours": (ws_mask.apply_mask, False),
        "ours (no numpy)": (ws_mask.apply_mask, True),  # HAVE_NUMPY = False around the whole loop
    }
    if ws_c_apply_mask is not None:
        impls["websockets C"] = (ws_c_apply_mask, False)
    results: list[MaskResult] = []
    budget = 0.02 if quick else 0.1  # CPU seconds per run and implementation, roughly
    for size in (250, 4 * 1024, 64 * 1024):
        data = rng.randbytes(size)
        key = rng.randbytes(4)
        expected = ws_mask.mask_bigint(data, key)
        for name, (fn, no_numpy) in impls.items():
            with numpy_disabled() if no_numpy else nullcontext():
                if bytes(fn(data, key)) != expected:
                    raise SystemExit(f"unmask {name} at {size} B: wrong output")
                # Calibrate the call count on one short loop.
                t0 = time.process_time()
                for _ in range(100):
                    fn(data, key)
                per_call = max((time.process_time() - t0) / 100, 1e-8)
            results.append(MaskResult(name, size, max(100, int(budget / per_call))))
        for _ in range(runs):
            for res in results[-len(impls) :]:
                fn, no_numpy = impls[res.name]
                loop = range(res.calls)
                with numpy_disabled() if no_numpy else nullcontext():
                    t0 = time.process_time()
                    for _ in loop:
                        fn(data, key)
                    res.runs.append(time.process_time() - t0)
    return results


# ------------------------------------------------------------------------------------------------- reporting


def c_speedups_status() -> tuple[bool, str]:
    fn: Any = importlib.import_module("websockets.frames").apply_mask
    is_c = fn is ws_c_apply_mask and type(fn).__name__ == "builtin_function_or_method"
    where = "websockets.speedups.apply_mask, in C" if is_c else f"{fn.__module__}.{fn.__name__}, not C"
    return is_c, f"websockets.frames.apply_mask is {where}: {fn!r}"


def print_tables(results: list[Result], masks: list[MaskResult], names: list[str]) -> dict[str, float]:
    print()
    print("Frame parse + unmask + UTF-8 decode: messages/s (MB/s), median of runs, ± half the max-min spread")
    header = f"{'parser':<18}" + "".join(f"{_size_label(s):>30}" for s, _ in SIZES)
    print(header)
    print("-" * len(header))
    by_key = {(r.name, r.size): r for r in results}

    def rows(cell: Callable[[Result], str]) -> None:
        for name in names:
            cells = [cell(r) if (r := by_key.get((name, size))) else "-" for size, _ in SIZES]
            print(f"{name:<18}" + "".join(f"{c:>30}" for c in cells))

    rows(lambda r: f"{r.msgs_per_s:>12,.0f} ({r.mb_per_s:>6,.0f}) ±{r.spread * 100:>3.0f}%")
    print("min-max messages/s over the runs:")
    rows(lambda r: f"{r.messages / max(r.runs):,.0f}-{r.messages / min(r.runs):,.0f}")
    ratios: dict[str, float] = {}
    if "websockets" in names:
        print()
        targets = {250: 1.5, 4 * 1024: 1.0}
        for name in names:
            if name == "websockets":
                continue
            row = []
            for size, _ in SIZES:
                ours, theirs = by_key.get((name, size)), by_key[("websockets", size)]
                if ours is None:
                    continue
                ratio = theirs.median / ours.median
                lo = min(theirs.runs) / max(ours.runs)
                hi = max(theirs.runs) / min(ours.runs)
                ratios[f"{name} / websockets @ {size}"] = ratio
                target = targets.get(size)
                verdict = "" if target is None else (" ok" if ratio >= target else f" BELOW {target}x")
                row.append(f"{_size_label(size)} {ratio:.2f}x [{lo:.2f}-{hi:.2f}]{verdict}")
            print(f"RATIO {name} / websockets: " + ", ".join(row))
    print()
    print("Unmask alone (apply_mask): µs per call (GB/s), median of runs, [min-max µs]")
    for m in masks:
        lo, hi = (t / m.calls * 1e6 for t in (min(m.runs), max(m.runs)))
        print(
            f"  {m.name:<16} {_size_label(m.size):>7}: {m.us_per_call:>9.2f} µs "
            f"({m.gb_per_s:>6.2f} GB/s) [{lo:.2f}-{hi:.2f}]"
        )
    for m in masks:
        if m.name == "ours" and m.size == 64 * 1024:
            verdict = "ok" if m.gb_per_s >= 1.0 else "BELOW 1 GB/s"
            print(f"signaling.ws.mask.apply_mask at 64 KiB: {m.gb_per_s:.2f} GB/s (target >= 1 GB/s: {verdict})")
    return ratios


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def main(argv: list[str] | None = None) -> None:
    parser = common.make_parser(__doc__)
    common.add_runs(parser, 5, "timed runs per parser and size (median reported)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    parser.add_argument("--seed", type=int, default=6455)
    parser.add_argument(
        "--text",
        choices=list(TEXT_KINDS),
        default="mixed",
        help="mixed: about 1 word in 20 is non-ASCII UTF-8 (the default); ascii: ASCII only",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--parsers", nargs="+", choices=list(PARSERS), default=list(PARSERS))
    args = parser.parse_args(argv)

    is_c, status = c_speedups_status()
    print(f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.machine()}")
    try:
        import numpy

        numpy_version: str | None = numpy.__version__
    except ImportError:
        numpy_version = None
    print(f"websockets {websockets_version}; numpy {numpy_version} (HAVE_NUMPY={ws_mask.HAVE_NUMPY})")
    print(status)
    if not is_c:
        print(
            "WARNING: websockets runs without its C speedups; its figures are not the baseline",
            file=sys.stderr,
        )
    print(
        f"runs={args.runs}, seed={args.seed}, text={args.text}, chunk={CHUNK} B, messages: "
        + ", ".join(f"{max(1, c // (10 if args.quick else 1)):,} x {_size_label(s)}" for s, c in SIZES)
    )

    rng = random.Random(args.seed)
    utf8_share = TEXT_KINDS[args.text]
    results = bench_parsers(rng, args.runs, 10 if args.quick else 1, args.parsers, utf8_share)
    masks = bench_mask(random.Random(args.seed + 1), args.runs, args.quick)
    ratios = print_tables(results, masks, args.parsers)

    if args.json:
        doc = {
            "benchmark": "bench_parse",
            "python": platform.python_version(),
            "websockets": websockets_version,
            "websockets_c_apply_mask": is_c,
            "numpy": numpy_version,
            "have_numpy": ws_mask.HAVE_NUMPY,
            "numpy_threshold": ws_mask.NUMPY_THRESHOLD,
            "runs": args.runs,
            "text": args.text,
            "seed": args.seed,
            "quick": args.quick,
            "chunk": CHUNK,
            "parse": [r.as_dict() for r in results],
            "unmask": [m.as_dict() for m in masks],
            "ratios": ratios,
        }
        common.write_json(args.json, doc, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Property tests of the sans-I/O core (hypothesis): round trips, split invariance, garbage never raises."""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Sequence
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.ws import events as ev
from signaling.ws.connection import Connection, Side, State
from signaling.ws.exceptions import HandshakeError
from signaling.ws.frames import Opcode
from signaling.ws.handshake import ClientHandshake
from signaling.ws.http11 import DEFAULT_MAX_BODY

from .helpers import RFC_KEY, after_handshake, close_body, frame, read_frames, request_head, response_101

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sides = st.sampled_from([Side.SERVER, Side.CLIENT])
# 1- to 4-byte UTF-8 sequences, so fragment and chunk cuts land inside code points.
ALPHABET = "aZ0 ~\x00\x7fé\u07ff€\u0800\ud7ff\ue000\uffff😀\U0010ffff"


def other(side: Side) -> Side:
    return Side.CLIENT if side is Side.SERVER else Side.SERVER


def cut(data: bytes, points: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates and out-of-range values allowed)."""
    bounds = sorted({0, len(data), *(min(p, len(data)) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def payloads(draw: st.DrawFn) -> tuple[bool, bytes]:
    """(is_text, payload) of any size up to ~70 KiB, built from a seed so large sizes stay cheap."""
    is_text = draw(st.booleans())
    size = draw(st.one_of(st.integers(0, 200), st.integers(0, 70_000)))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    if is_text:
        text = "".join(rng.choices(ALPHABET, k=size))
        return True, text.encode()[:size].decode("utf-8", "ignore").encode()
    return False, rng.randbytes(size)


def split_points(size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, size), max_size=8)


# ------------------------------------------------------------------------------------------------ round trip


@BOUNDED
@given(side=sides, message=payloads(), data=st.data())
def test_round_trip(side: Side, message: tuple[bool, bytes], data: st.DataObject) -> None:
    """Whatever one side sends, in one frame or fragmented at random, the other side reads back."""
    is_text, payload = message
    sender = after_handshake(side)
    receiver = after_handshake(other(side), max_message_size=None)
    pieces = cut(payload, data.draw(split_points(len(payload)), label="fragments"))
    if len(pieces) <= 1 and data.draw(st.booleans(), label="send_text/send_binary"):
        if is_text:
            sender.send_text(payload.decode())
        else:
            sender.send_binary(payload)
    else:
        pieces = pieces or [b""]
        for i, piece in enumerate(pieces):
            opcode = Opcode.CONT if i else Opcode.TEXT if is_text else Opcode.BINARY
            sender.send_frame(opcode, piece, fin=i == len(pieces) - 1)
    wire = sender.data_to_send()
    assert all(f.masked is sender.is_client for f in read_frames(wire))
    if len(wire) <= 3000 and data.draw(st.booleans(), label="bytewise"):
        chunks = [wire[i : i + 1] for i in range(len(wire))]
    else:
        chunks = cut(wire, data.draw(split_points(len(wire)), label="chunks"))
    events: list[ev.Event] = []
    for chunk in chunks:
        events += receiver.receive_data(chunk)
    expected = ev.TextMessage(payload.decode()) if is_text else ev.BinaryMessage(payload)
    assert events == [expected]
    assert receiver.data_to_send() == b""
    assert receiver.state is State.OPEN


# ---------------------------------------------------------------------------------------- split invariance


@st.composite
def peer_stream(draw: st.DrawFn, to_client: bool) -> bytes:
    """A plausible stream of peer frames: mostly valid messages and control frames, fragmented, with code
    points split across fragments, plus now and then a violation (bad UTF-8, bad close, reserved bits...)."""

    def mk(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
        key = None if to_client else draw(st.binary(min_size=4, max_size=4))
        return frame(opcode, payload, fin=fin, rsv=rsv, mask_key=key)

    out = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["text", "text", "binary", "fragmented", "ping", "pong", "close", "violation"]))
        if kind == "text":
            out.append(mk(Opcode.TEXT, draw(st.text(ALPHABET, max_size=40)).encode()))
        elif kind == "binary":
            out.append(mk(Opcode.BINARY, draw(st.binary(max_size=300))))
        elif kind == "fragmented":
            is_text = draw(st.booleans())
            raw = draw(st.text(ALPHABET, max_size=60)).encode() if is_text else draw(st.binary(max_size=60))
            pieces = cut(raw, draw(split_points(len(raw)))) or [b""]
            for i, piece in enumerate(pieces):
                if i and draw(st.integers(0, 4)) == 0:
                    out.append(mk(Opcode.PING, draw(st.binary(max_size=10))))
                opcode = Opcode.CONT if i else Opcode.TEXT if is_text else Opcode.BINARY
                out.append(mk(opcode, piece, fin=i == len(pieces) - 1))
        elif kind in ("ping", "pong"):
            out.append(mk(Opcode.PING if kind == "ping" else Opcode.PONG, draw(st.binary(max_size=125))))
        elif kind == "close":
            code = draw(st.sampled_from([None, 1000, 1001, 1005, 1011, 2000, 4999, 5000]))
            reason = draw(st.sampled_from([b"", b"bye", b"\xff"]))
            out.append(mk(Opcode.CLOSE, b"" if code is None else close_body(code, reason)))
        else:
            violation = draw(st.sampled_from(["utf8", "rsv", "opcode", "cont", "ctl-fin", "ctl-long", "close-1"]))
            if violation == "utf8":
                out.append(mk(Opcode.TEXT, b"ok" + draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"]))))
            elif violation == "rsv":
                out.append(mk(Opcode.TEXT, b"x", rsv=draw(st.integers(1, 7))))
            elif violation == "opcode":
                out.append(mk(draw(st.sampled_from([3, 7, 0xB, 0xF])), b"x"))
            elif violation == "cont":
                out.append(mk(Opcode.CONT, b"x"))
            elif violation == "ctl-fin":
                out.append(mk(Opcode.PING, b"x", fin=False))
            elif violation == "ctl-long":
                out.append(mk(Opcode.PING, b"x" * 126))
            else:
                out.append(mk(Opcode.CLOSE, b"\x03"))
    return b"".join(out)


def normalized(events: Sequence[ev.Event]) -> list[object]:
    """Events with Failed reasons dropped: the message may say where the error was seen, the code may not
    change."""
    return [("Failed", e.code) if isinstance(e, ev.Failed) else e for e in events]


def fixed_key_handshake() -> ClientHandshake:
    """A client handshake with RFC 6455's sample key (the one RFC_ACCEPT answers), in its request as well."""
    with mock.patch.object(secrets, "token_bytes", lambda n: b"the sample nonce"[:n]):
        handshake = ClientHandshake("server.example.com", "/chat")
    assert handshake.key == RFC_KEY
    return handshake


def drive_all(side: Side, chunks: Sequence[bytes], limit: int | None) -> tuple[object, ...]:
    """Feed ``chunks`` (handshake included) to a fresh connection, accepting as soon as a request is in, and
    return everything observable: events, frames written (close reasons dropped), state and flags."""
    conn = Connection(side, max_message_size=limit)
    if side is Side.CLIENT:
        conn.send_request(fixed_key_handshake())
        conn.data_to_send()
    events: list[ev.Event] = []
    out = b""
    for chunk in chunks:
        new = conn.receive_data(chunk)
        events += new
        if new and isinstance(new[-1], ev.RequestReceived):
            conn.accept(new[-1].request)
            out += conn.data_to_send()
            events += conn.receive_data(b"")
        out += conn.data_to_send()
    if side is Side.SERVER:
        head, sep, out = out.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"HTTP/1.1 101 ")
    frames = [
        (f.opcode, f.payload[:2] if f.opcode == Opcode.CLOSE else f.payload, f.fin, f.masked) for f in read_frames(out)
    ]
    return (normalized(events), frames, conn.state, conn.close_transport, conn.close_expected, conn.close_code)


@BOUNDED
@given(side=sides, data=st.data(), limit=st.sampled_from([None, 100]))
def test_split_invariance(side: Side, data: st.DataObject, limit: int | None) -> None:
    """The same bytes, handshake included, give the same events and output whole, cut anywhere, or trickled
    one byte at a time."""
    head = request_head() if side is Side.SERVER else response_101(fixed_key_handshake().key)
    stream = data.draw(peer_stream(to_client=side is Side.CLIENT), label="frames")
    wire = head + stream
    whole = drive_all(side, [wire], limit)
    if data.draw(st.booleans(), label="bytewise"):
        chunks = [wire[i : i + 1] for i in range(len(wire))]
    else:
        chunks = cut(wire, data.draw(split_points(len(wire)), label="cuts"))
    assert drive_all(side, chunks, limit) == whole


# ----------------------------------------------------------------------------------------------- garbage

PEER_EVENTS = (ev.TextMessage, ev.BinaryMessage, ev.PingReceived, ev.PongReceived, ev.CloseReceived, ev.Failed)


@st.composite
def junk_frames(draw: st.DrawFn, to_client: bool) -> bytes:
    """Frames with random header bits, lengths and payloads (the mask bit usually right for the side)."""
    out = []
    for _ in range(draw(st.integers(1, 8))):
        b0 = draw(st.integers(0, 255))
        masked = draw(st.integers(0, 9)) == 0 if to_client else draw(st.integers(0, 9)) != 0
        n = draw(st.integers(0, 200))
        length = draw(st.one_of(st.just(n), st.integers(0, 2**64 - 1)))
        payload = draw(st.one_of(st.binary(max_size=n), st.text(ALPHABET, max_size=n).map(str.encode)))
        raw = frame(Opcode.CONT, payload, mask_key=b"\x01\x02\x03\x04" if masked else None, length=length)
        out.append(bytes([b0]) + raw[1:])  # the random first byte replaces the placeholder opcode
    return b"".join(out)


@BOUNDED
@given(
    side=sides,
    data=st.data(),
    limit=st.sampled_from([None, 100, 65536]),
    structured=st.booleans(),
)
def test_garbage_never_raises(side: Side, data: st.DataObject, limit: int | None, structured: bool) -> None:
    conn = after_handshake(side, max_message_size=limit)
    if structured:
        garbage = data.draw(junk_frames(to_client=conn.is_client), label="junk frames")
    else:
        garbage = data.draw(st.binary(max_size=1500), label="garbage")
    events: list[ev.Event] = []
    for chunk in cut(garbage, data.draw(split_points(len(garbage)), label="cuts")):
        events += conn.receive_data(chunk)  # never raises
    assert all(isinstance(e, PEER_EVENTS) for e in events), events
    ends = [i for i, e in enumerate(events) if isinstance(e, ev.Failed | ev.CloseReceived)]
    assert ends in ([], [len(events) - 1])
    for e in events:
        if isinstance(e, ev.Failed):
            assert e.code in (1002, 1007, 1009)
    out = read_frames(conn.data_to_send())  # well-formed output, masked as the side requires
    assert all(f.masked is conn.is_client for f in out)
    if ends:
        assert conn.state is State.CLOSED
        assert out[-1].opcode == Opcode.CLOSE
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert conn.close_transport


# ------------------------------------------------------------------------------------------------- heads

HEADER_NAMES = ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "X-A", "Bad Name"]
HEADER_VALUES = ["websocket", "Upgrade", "dGhlIHNhbXBsZSBub25jZQ==", "13", "a", "", "\x00", "é", "keep-alive, up"]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """Request heads from plausible pieces, some broken; or plain random bytes."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=700))
    method = draw(st.sampled_from(["GET", "POST", "G T", ""]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "http/1.1", "HTTP/1.1 x"]))
    lines = [f"{method} {draw(st.sampled_from(['/', '/chat?x=1', '', '*']))} {version}".encode("latin-1")]
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.sampled_from(HEADER_NAMES))
        value = draw(st.sampled_from(HEADER_VALUES))
        sep = draw(st.sampled_from([": ", ":", " : ", ""]))
        lines.append(f"{name}{sep}{value}".encode("latin-1"))
    if draw(st.booleans()):
        lines.append(draw(st.binary(max_size=40)))
    return b"\r\n".join(lines) + draw(st.sampled_from([b"\r\n\r\n", b"\r\n", b""])) + draw(st.binary(max_size=20))


@BOUNDED
@given(head=heads(), data=st.data())
def test_random_request_head(head: bytes, data: st.DataObject) -> None:
    conn = Connection(Side.SERVER, max_head_size=512)
    events: list[ev.Event] = []
    for chunk in cut(head, data.draw(split_points(len(head)), label="cuts")):
        events += conn.receive_data(chunk)  # never raises
    assert len(events) <= 1
    if not events:  # needs more data
        assert conn.state is State.CONNECTING
        assert conn.data_to_send() == b""
        assert b"\r\n\r\n" not in head[:512]
        return
    event = events[0]
    assert isinstance(event, ev.BadRequest | ev.RequestReceived)
    if isinstance(event, ev.BadRequest):
        assert event.error.status in (400, 431, 505)
        assert conn.data_to_send().startswith(f"HTTP/1.1 {event.error.status} ".encode())
        assert conn.state is State.CLOSED and conn.close_transport
        return
    try:
        conn.accept(event.request)
    except HandshakeError as exc:
        assert exc.status in (400, 405, 426)
        assert conn.state is State.CLOSED and conn.close_transport
        assert conn.data_to_send().startswith(f"HTTP/1.1 {exc.status} ".encode())
    else:
        assert conn.state is State.OPEN
        assert conn.data_to_send().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


@FEWER
@given(head=st.one_of(st.binary(max_size=700), heads().map(lambda h: b"HTTP/1.1 101 ok" + h[h.find(b"\r\n") :])))
def test_random_response_head(head: bytes) -> None:
    conn = Connection(Side.CLIENT, max_head_size=512)
    conn.send_request(ClientHandshake("a"))
    conn.data_to_send()
    events = conn.receive_data(head)  # never raises
    assert len(events) <= 1
    assert all(isinstance(e, ev.HandshakeFailed | ev.HandshakeComplete) for e in events)
    if events and isinstance(events[0], ev.HandshakeFailed):
        assert conn.state is State.CLOSED and conn.close_transport


# ------------------------------------------------------------------------------------------------ request bodies


@BOUNDED
@given(body=st.binary(max_size=3000), after=st.binary(max_size=50), data=st.data())
def test_a_request_body_is_the_same_however_it_is_cut(body: bytes, after: bytes, data: st.DataObject) -> None:
    """A Content-Length body comes whole with its request, whatever the reads; what follows it stays unread."""
    head = f"POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    wire = head + body + after
    conn = Connection(Side.SERVER)
    received: list[ev.Event] = []
    fed = 0
    for piece in cut(wire, data.draw(split_points(len(wire)))):
        received += conn.receive_data(piece)
        fed += len(piece)
        assert (conn.request is None) == (fed < len(head) + len(body))  # received once the body is complete
    (event,) = received
    assert isinstance(event, ev.RequestReceived)
    assert event.request.body == body and conn.request is event.request
    assert conn.state is State.CONNECTING and conn.data_to_send() == b""


@FEWER
@given(size=st.integers(DEFAULT_MAX_BODY + 1, 10**12), data=st.data())
def test_a_body_past_the_limit_is_refused_before_it_is_read(size: int, data: st.DataObject) -> None:
    head = f"POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n".encode()
    conn = Connection(Side.SERVER)
    events = conn.receive_data(head + data.draw(st.binary(max_size=100)))
    assert [type(e) for e in events] == [ev.BadRequest]
    assert conn.data_to_send().startswith(b"HTTP/1.1 413 ")

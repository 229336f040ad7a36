"""Frames and handshake heads for the transport's tests, and sans-I/O connections already OPEN.

Well-formed frames are built with the product's ``encode_frame`` (its bytes are checked against RFC 6455 5.7 in
test_frames.py) and read back with its ``decode_header``; payloads are unmasked by ``ref_mask``, a per-byte XOR
that shares nothing with the fast strategies of mask.py. ``frame`` is the one raw builder, for what
``encode_frame`` will not build: a chosen (fixed or zero) masking key, RSV bits, a length that is not the payload's.
Opcodes are ``signaling.ws.frames.Opcode``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from signaling.ws.connection import Connection, Side, State
from signaling.ws.events import Event, Failed, HandshakeComplete, RequestReceived
from signaling.ws.frames import Opcode, decode_header, encode_frame
from signaling.ws.handshake import ClientHandshake, accept_key

__all__ = [
    "INVALID_CLOSE_CODES",
    "MASK",
    "RFC_ACCEPT",
    "RFC_KEY",
    "VALID_CLOSE_CODES",
    "RawFrame",
    "after_handshake",
    "assert_failed",
    "client_after_handshake",
    "close_body",
    "feed",
    "flags",
    "frame",
    "header_len",
    "parse_frame",
    "peer_frame",
    "read_frames",
    "receive_request",
    "ref_mask",
    "request_head",
    "response_101",
    "sent_frames",
    "server_after_handshake",
]

#: RFC 6455 1.3 sample key and its accept value.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#: The masking key of the RFC 6455 5.7 examples.
MASK = bytes.fromhex("37fa213d")
#: Close codes a close frame may carry (7.4.1, 7.4.2), and codes it may not.
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 2000, 2999, 5000, 65535]


def ref_mask(data: bytes, key: bytes) -> bytes:
    """The obvious per-byte XOR: the reference every fast strategy is compared with (tests only)."""
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


# ------------------------------------------------------------------------------------------ building frames


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask_key: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """One raw frame, for what ``encode_frame`` does not build: masked with ``mask_key`` (a fixed or zero key),
    ``rsv`` in the 3-bit RSV1-3 field (4 = RSV1), or ``length`` in the header instead of the payload's (to declare
    more payload than given, e.g. to feed only a header or the start of a frame)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode
    mbit = 0x80 if mask_key is not None else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask_key is None:
        return head + payload
    return head + mask_key + ref_mask(payload, mask_key)


def peer_frame(
    conn: Connection,
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """A frame from ``conn``'s peer, masked as 5.1 wants: towards a server masked, towards a client not."""
    masked = not conn.is_client
    if rsv or length is not None:
        return frame(opcode, payload, fin=fin, rsv=rsv, mask_key=MASK if masked else None, length=length)
    return encode_frame(opcode, payload, fin=fin, mask=masked)


def header_len(conn: Connection, length: int) -> int:
    """Bytes of a peer frame's header (mask key included) for a payload of ``length``."""
    base = 2 if length < 126 else 4 if length < 65536 else 10
    return base if conn.is_client else base + 4


def close_body(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


# ------------------------------------------------------------------------------------------- reading frames


@dataclass(frozen=True)
class RawFrame:
    fin: bool
    opcode: Opcode
    masked: bool
    payload: bytes  # unmasked

    @property
    def close_code(self) -> int:
        assert self.opcode == Opcode.CLOSE, self
        return int.from_bytes(self.payload[:2], "big")

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode()


def parse_frame(data: bytes, pos: int = 0) -> tuple[RawFrame, int] | None:
    """The frame at ``data[pos]`` and the offset after it, or None while it is not all there.

    Raises ProtocolError (from ``decode_header``) on a header that RFC 6455 forbids: RSV bits, a reserved opcode...
    """
    header = decode_header(data, pos)
    if header is None:
        return None
    b0, length, key, start = header
    end = start + length
    if len(data) < end:
        return None
    payload = data[start:end]
    return RawFrame(bool(b0 & 0x80), Opcode(b0 & 0x0F), bool(key), ref_mask(payload, key) if key else payload), end


def read_frames(data: bytes) -> list[RawFrame]:
    """Split ``data`` into whole frames; trailing partial bytes are an error."""
    frames: list[RawFrame] = []
    pos = 0
    while pos < len(data):
        parsed = parse_frame(data, pos)
        assert parsed is not None, "truncated frame in output"
        one, pos = parsed
        frames.append(one)
    return frames


def sent_frames(conn: Connection) -> list[tuple[int, bytes]]:
    """Drain ``conn``'s output as (opcode, payload) pairs, checking the 5.1 masking rule for its side (and, through
    ``decode_header``, that no frame uses RSV bits)."""
    frames = read_frames(conn.data_to_send())
    for f in frames:
        assert f.masked is conn.is_client, f"{conn.side.value} frame masked={f.masked}"
    return [(f.opcode, f.payload) for f in frames]


# --------------------------------------------------------------------------------------------------- heads


def request_head(
    *,
    method: str = "GET",
    target: str = "/chat",
    version: str = "HTTP/1.1",
    host: str = "server.example.com",
    headers: Sequence[tuple[str, str]] | None = None,
    drop: Iterable[str] = (),
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A client's opening handshake (RFC 6455 1.3 sample by default, to ``host``); ``headers`` replaces all the
    header fields, ``drop`` removes some by name, ``extra`` adds some."""
    if headers is None:
        headers = [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", RFC_KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    dropped = {d.lower() for d in drop}
    lines = [f"{method} {target} {version}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in dropped]
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response_101(key: str, extra: Sequence[tuple[str, str]] = (), *, accept: str | None = None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key) if accept is None else accept}",
    ]
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# ---------------------------------------------------------------------------------------------- connections


def feed(conn: Connection, data: bytes, step: int | None = None) -> list[Event]:
    """``receive_data`` with all of ``data`` at once, or in pieces of ``step`` bytes; returns every event."""
    if step is None:
        return conn.receive_data(data)
    events: list[Event] = []
    for i in range(0, len(data), step):
        events += conn.receive_data(data[i : i + step])
    return events


def receive_request(conn: Connection, data: bytes, step: int | None = None) -> RequestReceived:
    """Feed a request head to a server Connection; it must yield exactly one RequestReceived."""
    events = feed(conn, data, step)
    assert len(events) == 1 and isinstance(events[0], RequestReceived), events
    return events[0]


def server_after_handshake(**kwargs: Any) -> Connection:
    """A server Connection in OPEN state, its 101 already drained."""
    conn = Connection(Side.SERVER, **kwargs)
    conn.accept(receive_request(conn, request_head()).request)
    assert conn.data_to_send().startswith(b"HTTP/1.1 101 ")
    assert conn.state is State.OPEN
    return conn


def client_after_handshake(**kwargs: Any) -> Connection:
    """A client Connection in OPEN state, its request already drained."""
    conn = Connection(Side.CLIENT, **kwargs)
    handshake = ClientHandshake("server.example.com", "/chat")
    conn.send_request(handshake)
    assert conn.data_to_send().startswith(b"GET /chat HTTP/1.1\r\n")
    events = conn.receive_data(response_101(handshake.key))
    assert len(events) == 1 and isinstance(events[0], HandshakeComplete), events
    assert conn.state is State.OPEN
    return conn


def flags(conn: Connection) -> tuple[State, bool, bool]:
    """(state, close_transport, close_expected): read through a call so that mypy does not carry narrowing
    from one assertion over the next send/receive call."""
    return conn.state, conn.close_transport, conn.close_expected


def after_handshake(side: Side, **kwargs: Any) -> Connection:
    return server_after_handshake(**kwargs) if side is Side.SERVER else client_after_handshake(**kwargs)


def assert_failed(conn: Connection, events: Sequence[Event], code: int) -> None:
    """``events`` end with Failed(code), the matching close frame is the only output, and the connection is
    over: CLOSED, transport to be closed, and deaf to anything more."""
    assert events, "no event"
    last = events[-1]
    assert isinstance(last, Failed), events
    assert last.code == code, (last, code)
    out = sent_frames(conn)
    assert len(out) == 1 and out[0][0] == Opcode.CLOSE, out
    assert out[0][1][:2] == code.to_bytes(2, "big")
    assert out[0][1][2:].decode("utf-8") == last.reason
    assert conn.state is State.CLOSED
    assert conn.close_transport
    assert conn.close_sent is not None and conn.close_sent[0] == code
    assert conn.receive_data(peer_frame(conn, Opcode.TEXT, b"after")) == []
    assert conn.data_to_send() == b""

"""Builders for the sans-I/O core's tests: raw frames, handshake heads, connections already OPEN.

The frame reader here (``read_frames``) is a deliberately naive reference implementation (a per-byte XOR loop,
no fast paths), so the core's output is checked by code that shares nothing with it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from signaling.ws.connection import Connection, Side, State
from signaling.ws.events import Event, Failed, HandshakeComplete, RequestReceived
from signaling.ws.handshake import ClientHandshake, accept_key

__all__ = [
    "BINARY",
    "CLOSE",
    "CONT",
    "MASK",
    "PING",
    "PONG",
    "RFC_ACCEPT",
    "RFC_KEY",
    "TEXT",
    "RawFrame",
    "after_handshake",
    "assert_failed",
    "client_after_handshake",
    "client_frame",
    "close_body",
    "feed",
    "flags",
    "frame",
    "peer_frame",
    "read_frames",
    "ref_mask",
    "request_head",
    "response_101",
    "sent_frames",
    "server_after_handshake",
    "server_frame",
]

#: RFC 6455 1.3 sample key and its accept value.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#: The masking key of the RFC 6455 5.7 examples.
MASK = bytes.fromhex("37fa213d")

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ref_mask(data: bytes, key: bytes) -> bytes:
    """The obvious per-byte XOR: the reference every fast strategy is compared with (tests only)."""
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask_key: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """One raw frame. ``rsv`` is the 3-bit RSV1-3 field (4 = RSV1); ``length`` overrides the header's length
    (to declare more payload than given, e.g. to feed only a header or the start of a frame)."""
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


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask_key: bytes = MASK,
    length: int | None = None,
) -> bytes:
    """A frame as a client sends it: masked."""
    return frame(opcode, payload, fin=fin, rsv=rsv, mask_key=mask_key, length=length)


def server_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, length: int | None = None
) -> bytes:
    """A frame as a server sends it: never masked."""
    return frame(opcode, payload, fin=fin, rsv=rsv, length=length)


def peer_frame(
    conn: Connection,
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """A well-masked frame from ``conn``'s peer: masked towards a server, unmasked towards a client."""
    if conn.is_client:
        return server_frame(opcode, payload, fin=fin, rsv=rsv, length=length)
    return client_frame(opcode, payload, fin=fin, rsv=rsv, length=length)


def close_body(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


@dataclass(frozen=True)
class RawFrame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes  # unmasked


def read_frames(data: bytes) -> list[RawFrame]:
    """Split ``data`` into whole frames (naive reference parser); trailing partial bytes are an error."""
    frames: list[RawFrame] = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        key = None
        if b1 & 0x80:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + n]
        assert len(payload) == n, "truncated frame in output"
        pos += n
        if key is not None:
            payload = ref_mask(payload, key)
        frames.append(RawFrame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, key is not None, payload))
    return frames


def sent_frames(conn: Connection) -> list[tuple[int, bytes]]:
    """Drain ``conn``'s output as (opcode, payload) pairs, checking the 5.1 masking rule for its side and
    that no frame uses RSV bits."""
    frames = read_frames(conn.data_to_send())
    for f in frames:
        assert f.masked is conn.is_client, f"{conn.side.value} frame masked={f.masked}"
        assert f.rsv == 0
    return [(f.opcode, f.payload) for f in frames]


def request_head(
    *,
    method: str = "GET",
    target: str = "/chat",
    version: str = "HTTP/1.1",
    headers: Sequence[tuple[str, str]] | None = None,
    drop: Iterable[str] = (),
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A client's opening handshake (RFC 6455 1.3 sample by default); ``drop`` removes headers by name."""
    if headers is None:
        headers = [
            ("Host", "server.example.com"),
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


def feed(conn: Connection, data: bytes, step: int | None = None) -> list[Event]:
    """``receive_data`` with all of ``data`` at once, or in pieces of ``step`` bytes; returns every event."""
    if step is None:
        return conn.receive_data(data)
    events: list[Event] = []
    for i in range(0, len(data), step):
        events += conn.receive_data(data[i : i + step])
    return events


def server_after_handshake(**kwargs: Any) -> Connection:
    """A server Connection in OPEN state, its 101 already drained."""
    conn = Connection(Side.SERVER, **kwargs)
    events = conn.receive_data(request_head())
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    conn.accept(events[0].request)
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
    assert len(out) == 1 and out[0][0] == CLOSE, out
    assert out[0][1][:2] == code.to_bytes(2, "big")
    assert out[0][1][2:].decode("utf-8") == last.reason
    assert conn.state is State.CLOSED
    assert conn.close_transport
    assert conn.close_sent is not None and conn.close_sent[0] == code
    assert conn.receive_data(peer_frame(conn, TEXT, b"after")) == []
    assert conn.data_to_send() == b""

"""Frames on the wire (RFC 6455 section 5): opcodes, close codes, header encoding, close payloads.

Stateless: which frames are allowed when is the connection's business (connection.py).
"""

from __future__ import annotations

import enum
import os
import struct

from .errors import InvalidUtf8, ProtocolError
from .mask import apply_mask

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "CloseCode",
    "Opcode",
    "encode_frame",
    "is_valid_close_code",
    "parse_close_payload",
    "serialize_close_payload",
]


class Opcode(enum.IntEnum):
    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset((Opcode.CONT, Opcode.TEXT, Opcode.BINARY))
CONTROL_OPCODES = frozenset((Opcode.CLOSE, Opcode.PING, Opcode.PONG))


class CloseCode(enum.IntEnum):
    """Close codes of RFC 6455 7.4.1 that this project sends or names."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire: "the close frame had no code"
    ABNORMAL = 1006  # never on the wire: "the TCP connection dropped without a close frame"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011


# 7.4.1/7.4.2: the codes RFC 6455 defines for the wire. 1004-1006 and 1015 are reserved and must never be
# sent; 1012-1014 are later IANA registrations that Autobahn (and this server) treat as invalid.
_VALID_WIRE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011))


def is_valid_close_code(code: int) -> bool:
    """Whether a close frame may carry ``code``: RFC 6455's codes, or 3000-4999 (libraries and apps)."""
    return code in _VALID_WIRE_CODES or 3000 <= code <= 4999


_PACK_H = struct.Struct("!BB").pack
_PACK_H16 = struct.Struct("!BBH").pack
_PACK_H64 = struct.Struct("!BBQ").pack


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = False) -> bytes:
    """One frame as bytes. Servers never mask (5.1); clients mask with a fresh random key per frame (5.3)."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if mask:
        key = os.urandom(4)
        if n < 126:
            return _PACK_H(b0, 0x80 | n) + key + apply_mask(payload, key)
        if n < 65536:
            return _PACK_H16(b0, 0xFE, n) + key + apply_mask(payload, key)
        return _PACK_H64(b0, 0xFF, n) + key + apply_mask(payload, key)
    if n < 126:
        return _PACK_H(b0, n) + payload
    if n < 65536:
        return _PACK_H16(b0, 126, n) + payload
    return _PACK_H64(b0, 127, n) + payload


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Code and reason of a received close frame; 1005 when it has no body (5.5.1, 7.1.5)."""
    n = len(payload)
    if n == 0:
        return CloseCode.NO_STATUS, ""
    if n == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8("close reason is not valid UTF-8") from exc
    return code, reason


def serialize_close_payload(code: int | None, reason: str = "") -> bytes:
    """Body of a close frame we send; ``None`` (or 1005) sends an empty body."""
    if code is None or code == CloseCode.NO_STATUS:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    data = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("close reason longer than 123 bytes")
    return data

"""frames.py: encoding (RFC 6455 5.2 lengths, 5.7 examples), close codes and close payloads (5.5.1, 7.4)."""

from __future__ import annotations

import os

import pytest

from signaling.ws.exceptions import InvalidUtf8, ProtocolError, WebSocketError
from signaling.ws.frames import (
    CloseCode,
    Opcode,
    encode_frame,
    is_valid_close_code,
    parse_close_payload,
    serialize_close_payload,
    truncate_close_reason,
    unmasked_text_frame,
)

from .helpers import INVALID_CLOSE_CODES, MASK, VALID_CLOSE_CODES, read_frames


@pytest.fixture
def fixed_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """encode_frame draws its masking key from os.urandom: pin it to the RFC 5.7 example key."""
    monkeypatch.setattr(os, "urandom", lambda n: MASK[:n])


class TestOpcodes:
    def test_values(self) -> None:
        assert [int(o) for o in Opcode] == [0x0, 0x1, 0x2, 0x8, 0x9, 0xA]


# RFC 6455 5.7, byte for byte.
RFC_EXAMPLES = [
    pytest.param(Opcode.TEXT, b"Hello", True, False, "810548656c6c6f", id="unmasked-text"),
    pytest.param(Opcode.TEXT, b"Hello", True, True, "818537fa213d7f9f4d5158", id="masked-text"),
    pytest.param(Opcode.TEXT, b"Hel", False, False, "010348656c", id="fragment-1"),
    pytest.param(Opcode.CONT, b"lo", True, False, "80026c6f", id="fragment-2"),
    pytest.param(Opcode.PING, b"Hello", True, False, "890548656c6c6f", id="unmasked-ping"),
    pytest.param(Opcode.PONG, b"Hello", True, True, "8a8537fa213d7f9f4d5158", id="masked-pong"),
]


@pytest.mark.usefixtures("fixed_mask")
@pytest.mark.parametrize(("opcode", "payload", "fin", "mask", "expected"), RFC_EXAMPLES)
def test_rfc_examples(opcode: Opcode, payload: bytes, fin: bool, mask: bool, expected: str) -> None:
    assert encode_frame(opcode, payload, fin=fin, mask=mask) == bytes.fromhex(expected)


@pytest.mark.usefixtures("fixed_mask")
@pytest.mark.parametrize(
    ("size", "unmasked_head", "masked_head"),
    [
        pytest.param(0, "8200", "8280", id="7bit-0"),
        pytest.param(125, "827d", "82fd", id="7bit-125"),
        pytest.param(126, "827e007e", "82fe007e", id="16bit-126"),
        # RFC 5.7: "256 bytes binary message in a single unmasked frame".
        pytest.param(256, "827e0100", "82fe0100", id="16bit-256-rfc"),
        pytest.param(65535, "827effff", "82feffff", id="16bit-65535"),
        # RFC 5.7: "64KiB binary message in a single unmasked frame".
        pytest.param(65536, "827f0000000000010000", "82ff0000000000010000", id="64bit-65536-rfc"),
        pytest.param(70001, "827f0000000000011171", "82ff0000000000011171", id="64bit-70001"),
    ],
)
def test_lengths(size: int, unmasked_head: str, masked_head: str) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert encode_frame(Opcode.BINARY, payload) == bytes.fromhex(unmasked_head) + payload
    masked = encode_frame(Opcode.BINARY, payload, mask=True)
    head = bytes.fromhex(masked_head) + MASK
    assert masked[: len(head)] == head
    assert read_frames(masked)[0].payload == payload


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536], ids=str)
def test_unmasked_text_frame_is_encode_frame(size: int) -> None:
    payload = b"t" * size
    assert unmasked_text_frame(payload) == encode_frame(Opcode.TEXT, payload)


def test_client_key_is_fresh_per_frame() -> None:
    a = encode_frame(Opcode.TEXT, b"same text", mask=True)
    b = encode_frame(Opcode.TEXT, b"same text", mask=True)
    assert a[2:6] != b[2:6]
    assert a != b
    assert read_frames(a)[0].payload == read_frames(b)[0].payload == b"same text"


@pytest.mark.parametrize("code", VALID_CLOSE_CODES, ids=str)
def test_valid_close_code(code: int) -> None:
    assert is_valid_close_code(code)
    assert parse_close_payload(code.to_bytes(2, "big") + b"bye") == (code, "bye")


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES, ids=str)
def test_invalid_close_code(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(code.to_bytes(2, "big"))
    assert info.value.close_code == 1002


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(b"", (CloseCode.NO_STATUS, ""), id="empty-is-1005"),
        pytest.param(b"\x03\xe8", (1000, ""), id="code-only"),
        pytest.param(b"\x03\xe8bye", (1000, "bye"), id="code-and-reason"),
        pytest.param(b"\x0f\xa0" + "é€😀".encode(), (4000, "é€😀"), id="utf8-reason"),
        pytest.param(b"\x03\xe8" + b"x" * 123, (1000, "x" * 123), id="longest-reason"),
    ],
)
def test_parse_close_payload(payload: bytes, expected: tuple[int, str]) -> None:
    assert parse_close_payload(payload) == expected


@pytest.mark.parametrize(
    ("payload", "error", "code"),
    [
        pytest.param(b"\x03", ProtocolError, 1002, id="one-byte"),
        pytest.param(b"\x03\xed", ProtocolError, 1002, id="code-1005-on-wire"),
        pytest.param(b"\x03\xe8\xff", InvalidUtf8, 1007, id="reason-invalid-byte"),
        pytest.param(b"\x03\xe8\xc0\xaf", InvalidUtf8, 1007, id="reason-overlong"),
        pytest.param(b"\x03\xe8\xed\xa0\x80", InvalidUtf8, 1007, id="reason-surrogate"),
        pytest.param(b"\x03\xe8\xe2\x82", InvalidUtf8, 1007, id="reason-truncated"),
    ],
)
def test_parse_close_payload_errors(payload: bytes, error: type[ProtocolError], code: int) -> None:
    with pytest.raises(WebSocketError) as info:
        parse_close_payload(payload)
    assert type(info.value) is error
    assert isinstance(info.value, ProtocolError) and info.value.close_code == code
    assert not isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        pytest.param(None, "", b"", id="none-empty"),
        pytest.param(CloseCode.NO_STATUS, "", b"", id="1005-empty"),
        pytest.param(1000, "", b"\x03\xe8", id="code"),
        pytest.param(4999, "né", b"\x13\x87n\xc3\xa9", id="code-utf8-reason"),
    ],
)
def test_serialize_close_payload(code: int | None, reason: str, expected: bytes) -> None:
    assert serialize_close_payload(code, reason) == expected


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        pytest.param(None, "why", id="reason-without-code"),
        pytest.param(1006, "", id="reserved-code"),
        pytest.param(999, "", id="out-of-range"),
        pytest.param(1000, "x" * 124, id="reason-too-long"),
    ],
)
def test_serialize_close_payload_misuse(code: int | None, reason: str) -> None:
    # Local misuse, not a peer's violation: a plain ValueError is right here.
    with pytest.raises(ValueError):
        serialize_close_payload(code, reason)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param("short", "short", id="short"),
        pytest.param("x" * 123, "x" * 123, id="exactly-123"),
        pytest.param("x" * 124, "x" * 123, id="124"),
        pytest.param("é" * 62, "é" * 61, id="no-half-character"),
    ],
)
def test_truncate_close_reason(reason: str, expected: str) -> None:
    assert truncate_close_reason(reason) == expected
    serialize_close_payload(1000, truncate_close_reason(reason))  # always fits

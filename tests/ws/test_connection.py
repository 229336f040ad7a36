"""The sans-I/O Connection after the handshake, frames and messages (RFC 6455 5.1-5.7): framing and masking,
fragmentation, ping and pong, sending. One class per topic, every rule a row, each run on both sides (the ``side``
and ``conn`` fixtures of conftest.py), with bytes in and events, bytes out and the close code asserted.

What a message may carry (UTF-8, size limits) is in test_connection_payloads.py; closing and failing in
test_connection_close.py.
"""

from __future__ import annotations

import pytest

from signaling.ws import mask
from signaling.ws.connection import Connection, Side, State
from signaling.ws.events import BinaryMessage, CloseReceived, Event, PingReceived, PongReceived, TextMessage
from signaling.ws.frames import Opcode, encode_frame

from .helpers import (
    MASK,
    after_handshake,
    assert_failed,
    client_after_handshake,
    close_body,
    feed,
    frame,
    header_len,
    peer_frame,
    read_frames,
    sent_frames,
    server_after_handshake,
)


def send_everything(conn: Connection) -> None:
    """One call of every send method, for the masking checks."""
    conn.send_text("text")
    conn.send_text("é" * 100)
    conn.send_binary(b"\x00" * 300)
    conn.send_frame(Opcode.TEXT, b"frag", fin=False)
    conn.send_frame(Opcode.CONT, b"ment")
    conn.send_ping(b"ping")
    conn.send_pong(b"pong")
    conn.send_close(1000, "bye")


# ------------------------------------------------------------------------------------------------- framing


class TestFraming:
    @pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70001], ids=str)
    @pytest.mark.parametrize("step", [None, 4093], ids=["whole", "chunks"])
    def test_receive_lengths(self, side: Side, size: int, step: int | None) -> None:
        conn = after_handshake(side, max_message_size=None)
        payload = bytes(range(256)) * (size // 256) + b"\xff" * (size % 256)
        data = peer_frame(conn, Opcode.BINARY, payload)
        assert len(data) == header_len(conn, size) + size
        assert feed(conn, data, step) == [BinaryMessage(payload)]
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize(
        ("size", "length_bytes"),
        [
            pytest.param(0, "00", id="7bit-0"),
            pytest.param(125, "7d", id="7bit-125"),
            pytest.param(126, "7e007e", id="16bit-126"),
            pytest.param(65535, "7effff", id="16bit-65535"),
            pytest.param(65536, "7f0000000000010000", id="64bit-65536"),
        ],
    )
    @pytest.mark.parametrize("kind", ["text", "binary"])
    def test_send_lengths(self, side: Side, size: int, length_bytes: str, kind: str) -> None:
        conn = after_handshake(side)
        payload = b"a" * size
        if kind == "text":
            conn.send_text(payload.decode())
        else:
            conn.send_binary(payload)
        out = conn.data_to_send()
        b0 = b"\x81" if kind == "text" else b"\x82"
        head = bytes.fromhex(length_bytes)
        if side is Side.SERVER:
            assert out == b0 + head + payload  # exact bytes: never masked
        else:
            assert out[:1] == b0
            assert out[1:2] == bytes([head[0] | 0x80])
            assert out[2 : 1 + len(head)] == head[1:]
            assert read_frames(out)[0].payload == payload

    @pytest.mark.parametrize(
        ("wire", "expected", "reply"),
        [
            pytest.param("818537fa213d7f9f4d5158", [TextMessage("Hello")], [], id="masked-text"),
            pytest.param("010348656c", [], [], id="fragment-1-of-2"),
            pytest.param(
                "018337fa213d7f9f4d" + "808237fa213d5b95",
                [TextMessage("Hello")],
                [],
                id="masked-fragments",
            ),
            pytest.param(
                "898537fa213d7f9f4d5158", [PingReceived(b"Hello")], [(Opcode.PONG, b"Hello")], id="masked-ping"
            ),
            pytest.param("8a8537fa213d7f9f4d5158", [PongReceived(b"Hello")], [], id="masked-pong"),
        ],
    )
    def test_rfc_5_7_examples_server(self, wire: str, expected: list[Event], reply: list[object]) -> None:
        conn = server_after_handshake()
        data = bytes.fromhex(wire)
        if wire.startswith("0103"):  # the RFC's unmasked fragment is a client violation
            assert_failed(conn, conn.receive_data(data), 1002)
            return
        assert conn.receive_data(data) == expected
        assert sent_frames(conn) == reply

    @pytest.mark.parametrize(
        ("wire", "expected"),
        [
            pytest.param("810548656c6c6f", [TextMessage("Hello")], id="unmasked-text"),
            pytest.param("010348656c" + "80026c6f", [TextMessage("Hello")], id="unmasked-fragments"),
            pytest.param("890548656c6c6f", [PingReceived(b"Hello")], id="unmasked-ping"),
            pytest.param("827e0100" + "00" * 256, [BinaryMessage(bytes(256))], id="256-bytes"),
            pytest.param("827f0000000000010000" + "00" * 65536, [BinaryMessage(bytes(65536))], id="64-kib"),
        ],
    )
    def test_rfc_5_7_examples_client(self, wire: str, expected: list[Event]) -> None:
        conn = client_after_handshake()
        assert conn.receive_data(bytes.fromhex(wire)) == expected

    def test_server_never_masks(self) -> None:
        conn = server_after_handshake()
        send_everything(conn)
        frames = read_frames(conn.data_to_send())
        assert len(frames) == 8
        assert not any(f.masked for f in frames)

    def test_client_masks_every_frame(self) -> None:
        conn = client_after_handshake()
        send_everything(conn)
        frames = read_frames(conn.data_to_send())
        assert len(frames) == 8
        assert all(f.masked for f in frames)
        assert frames[0].payload == b"text"

    def test_client_mask_is_fresh_per_frame(self) -> None:
        conn = client_after_handshake()
        conn.send_text("same text")
        first = conn.data_to_send()
        conn.send_text("same text")
        second = conn.data_to_send()
        assert first[2:6] != second[2:6]  # the masking keys
        assert first != second
        assert read_frames(first)[0].payload == read_frames(second)[0].payload == b"same text"

    @pytest.mark.parametrize(
        "opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG, Opcode.CLOSE], ids=lambda o: Opcode(o).name
    )
    def test_unmasked_client_frame_is_1002(self, opcode: int) -> None:
        conn = server_after_handshake()
        payload = b"\x03\xe8" if opcode == Opcode.CLOSE else b"x"
        assert_failed(conn, conn.receive_data(encode_frame(opcode, payload)), 1002)

    @pytest.mark.parametrize(
        "opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG, Opcode.CLOSE], ids=lambda o: Opcode(o).name
    )
    def test_masked_server_frame_is_1002(self, opcode: int) -> None:
        conn = client_after_handshake()
        payload = b"\x03\xe8" if opcode == Opcode.CLOSE else b"x"
        assert_failed(conn, conn.receive_data(encode_frame(opcode, payload, mask=True)), 1002)

    @pytest.mark.parametrize("rsv", range(1, 8), ids=lambda r: f"rsv{r:03b}")
    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING], ids=lambda o: Opcode(o).name)
    def test_rsv_bits_are_1002(self, conn: Connection, rsv: int, opcode: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, opcode, b"x", rsv=rsv)), 1002)

    def test_rsv_on_continuation_is_1002(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, Opcode.TEXT, b"a", fin=False)) == []
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.CONT, b"b", rsv=4)), 1002)

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF], ids=lambda o: f"{o:#x}")
    def test_reserved_opcodes_are_1002(self, conn: Connection, opcode: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, opcode, b"x")), 1002)

    def test_reserved_opcode_inside_fragmented_message_is_1002(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, Opcode.TEXT, b"a", fin=False)) == []
        assert_failed(conn, conn.receive_data(peer_frame(conn, 0xB, b"")), 1002)

    @pytest.mark.parametrize("high", [0x80, 0xFF], ids=["msb-only", "all-ones"])
    def test_64bit_length_with_msb_is_1002(self, side: Side, high: int) -> None:
        conn = after_handshake(side, max_message_size=None)
        head = b"\x82" + bytes([0x7F | (0 if conn.is_client else 0x80)]) + bytes([high]) + b"\x00" * 7
        if not conn.is_client:
            head += MASK
        assert_failed(conn, conn.receive_data(head), 1002)

    def test_partial_header_waits(self, conn: Connection) -> None:
        data = peer_frame(conn, Opcode.BINARY, b"x" * 300)
        for i in range(header_len(conn, 300)):
            assert conn.receive_data(data[i : i + 1]) == []
        assert conn.state is State.OPEN


# ------------------------------------------------------------------------------------------------ messages


class TestFragmentation:
    @pytest.mark.parametrize("step", [None, 1, 3], ids=["whole", "bytewise", "3-byte"])
    def test_text_in_three_fragments(self, conn: Connection, step: int | None) -> None:
        data = (
            peer_frame(conn, Opcode.TEXT, b"Hel", fin=False)
            + peer_frame(conn, Opcode.CONT, b"lo, ", fin=False)
            + peer_frame(conn, Opcode.CONT, "wörld".encode())
        )
        assert feed(conn, data, step) == [TextMessage("Hello, wörld")]

    def test_binary_fragments(self, conn: Connection) -> None:
        data = peer_frame(conn, Opcode.BINARY, b"\x00\x01", fin=False) + peer_frame(conn, Opcode.CONT, b"\x02")
        assert conn.receive_data(data) == [BinaryMessage(b"\x00\x01\x02")]

    def test_empty_fragments(self, conn: Connection) -> None:
        data = (
            peer_frame(conn, Opcode.TEXT, b"", fin=False)
            + peer_frame(conn, Opcode.CONT, b"", fin=False)
            + peer_frame(conn, Opcode.CONT, b"")
        )
        assert conn.receive_data(data) == [TextMessage("")]

    def test_empty_messages(self, conn: Connection) -> None:
        data = peer_frame(conn, Opcode.TEXT, b"") + peer_frame(conn, Opcode.BINARY, b"")
        assert conn.receive_data(data) == [TextMessage(""), BinaryMessage(b"")]

    def test_messages_follow_each_other(self, conn: Connection) -> None:
        data = (
            peer_frame(conn, Opcode.TEXT, b"a", fin=False)
            + peer_frame(conn, Opcode.CONT, b"b")
            + peer_frame(conn, Opcode.BINARY, b"c", fin=False)
            + peer_frame(conn, Opcode.CONT, b"d")
        )
        assert conn.receive_data(data) == [TextMessage("ab"), BinaryMessage(b"cd")]

    @pytest.mark.parametrize("step", [None, 1], ids=["whole", "bytewise"])
    def test_control_frames_between_fragments(self, conn: Connection, step: int | None) -> None:
        data = (
            peer_frame(conn, Opcode.TEXT, b"He", fin=False)
            + peer_frame(conn, Opcode.PING, b"p1")
            + peer_frame(conn, Opcode.CONT, b"ll", fin=False)
            + peer_frame(conn, Opcode.PONG, b"p2")
            + peer_frame(conn, Opcode.PING, b"")
            + peer_frame(conn, Opcode.CONT, b"o")
        )
        assert feed(conn, data, step) == [
            PingReceived(b"p1"),
            PongReceived(b"p2"),
            PingReceived(b""),
            TextMessage("Hello"),
        ]
        assert sent_frames(conn) == [(Opcode.PONG, b"p1"), (Opcode.PONG, b"")]

    def test_close_between_fragments(self, conn: Connection) -> None:
        data = (
            peer_frame(conn, Opcode.TEXT, b"He", fin=False)
            + peer_frame(conn, Opcode.CLOSE, close_body(1001))
            + peer_frame(conn, Opcode.CONT, b"llo")
        )
        assert conn.receive_data(data) == [CloseReceived(1001, "")]
        assert sent_frames(conn) == [(Opcode.CLOSE, close_body(1001))]

    @pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE], ids=lambda o: Opcode(o).name)
    def test_fragmented_control_frame_is_1002(self, conn: Connection, opcode: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, opcode, b"", fin=False)), 1002)

    @pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE], ids=lambda o: Opcode(o).name)
    @pytest.mark.parametrize("size", [126, 65536], ids=["126", "65536"])
    def test_control_frame_over_125_is_1002(self, conn: Connection, opcode: int, size: int) -> None:
        payload = close_body(1000, b"x" * (size - 2)) if opcode == Opcode.CLOSE else b"x" * size
        # Decided from the header: the payload never needs to arrive.
        header = peer_frame(conn, opcode, payload)[: header_len(conn, size)]
        assert_failed(conn, conn.receive_data(header), 1002)

    def test_control_frame_of_125_is_fine(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, Opcode.PING, b"x" * 125)) == [PingReceived(b"x" * 125)]
        assert sent_frames(conn) == [(Opcode.PONG, b"x" * 125)]

    @pytest.mark.parametrize("fin", [True, False], ids=["fin", "no-fin"])
    def test_continuation_without_message_is_1002(self, conn: Connection, fin: bool) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.CONT, b"x", fin=fin)), 1002)

    def test_continuation_after_finished_message_is_1002(self, conn: Connection) -> None:
        data = peer_frame(conn, Opcode.TEXT, b"a", fin=False) + peer_frame(conn, Opcode.CONT, b"b")
        events = conn.receive_data(data + peer_frame(conn, Opcode.CONT, b"c"))
        assert events[0] == TextMessage("ab")
        assert_failed(conn, events, 1002)

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            (Opcode.TEXT, Opcode.TEXT),
            (Opcode.TEXT, Opcode.BINARY),
            (Opcode.BINARY, Opcode.TEXT),
            (Opcode.BINARY, Opcode.BINARY),
        ],
        ids=lambda o: Opcode(o).name,
    )
    @pytest.mark.parametrize("fin", [True, False], ids=["new-fin", "new-no-fin"])
    def test_new_data_frame_inside_fragmented_message_is_1002(
        self, conn: Connection, first: int, second: int, fin: bool
    ) -> None:
        data = peer_frame(conn, first, b"a", fin=False) + peer_frame(conn, second, b"b", fin=fin)
        assert_failed(conn, conn.receive_data(data), 1002)


# ------------------------------------------------------------------------------------------ control frames


class TestPingPong:
    @pytest.mark.parametrize("payload", [b"", b"x", b"\x00\xff" * 62 + b"!"], ids=["empty", "1-byte", "125"])
    def test_ping_gets_pong_with_same_payload(self, conn: Connection, payload: bytes) -> None:
        assert conn.receive_data(peer_frame(conn, Opcode.PING, payload)) == [PingReceived(payload)]
        if conn.is_client:
            assert sent_frames(conn) == [(Opcode.PONG, payload)]
        else:
            assert conn.data_to_send() == encode_frame(Opcode.PONG, payload)

    def test_pongs_in_order(self, conn: Connection) -> None:
        data = peer_frame(conn, Opcode.PING, b"1") + peer_frame(conn, Opcode.PING, b"2")
        assert conn.receive_data(data) == [PingReceived(b"1"), PingReceived(b"2")]
        assert sent_frames(conn) == [(Opcode.PONG, b"1"), (Opcode.PONG, b"2")]

    def test_unsolicited_pong_is_ignored(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, Opcode.PONG, b"beat")) == [PongReceived(b"beat")]
        assert conn.data_to_send() == b""
        assert conn.state is State.OPEN

    def test_no_pong_after_our_close(self, conn: Connection) -> None:
        conn.send_close()
        conn.data_to_send()
        assert conn.receive_data(peer_frame(conn, Opcode.PING, b"late")) == [PingReceived(b"late")]
        assert conn.data_to_send() == b""

    def test_send_ping_and_pong(self, conn: Connection) -> None:
        conn.send_ping(b"a")
        conn.send_pong(b"b")
        conn.send_ping()
        assert sent_frames(conn) == [(Opcode.PING, b"a"), (Opcode.PONG, b"b"), (Opcode.PING, b"")]

    @pytest.mark.parametrize("method", ["send_ping", "send_pong"])
    def test_send_control_over_125_is_refused(self, conn: Connection, method: str) -> None:
        with pytest.raises(ValueError):
            getattr(conn, method)(b"x" * 126)
        assert conn.data_to_send() == b""


# ------------------------------------------------------------------------------------------ sending, misc


class TestSending:
    def test_server_fragmented_send_rfc_bytes(self) -> None:
        conn = server_after_handshake()
        conn.send_frame(Opcode.TEXT, b"Hel", fin=False)
        conn.send_frame(Opcode.CONT, b"lo")
        assert conn.data_to_send() == bytes.fromhex("010348656c80026c6f")

    def test_data_to_send_drains(self, conn: Connection) -> None:
        assert conn.data_to_send() == b""
        conn.send_text("a")
        conn.send_text("b")
        assert [p for _, p in sent_frames(conn)] == [b"a", b"b"]
        assert conn.data_to_send() == b""

    def test_pair_round_trip(self) -> None:
        server, client = server_after_handshake(), client_after_handshake()
        client.send_text("hi ☃")
        client.send_binary(b"\x00" * 5000)
        assert server.receive_data(client.data_to_send()) == [TextMessage("hi ☃"), BinaryMessage(bytes(5000))]
        server.send_text("yo")
        client.send_ping(b"?")
        assert client.receive_data(server.data_to_send()) == [TextMessage("yo")]
        assert server.receive_data(client.data_to_send()) == [PingReceived(b"?")]
        assert client.receive_data(server.data_to_send()) == [PongReceived(b"?")]
        client.send_close(1000, "bye")
        assert server.receive_data(client.data_to_send()) == [CloseReceived(1000, "bye")]
        assert client.receive_data(server.data_to_send()) == [CloseReceived(1000, "")]
        assert server.close_transport and client.state is State.CLOSED and server.state is State.CLOSED

    def test_repr(self, conn: Connection) -> None:
        assert repr(conn) == f"<Connection {conn.side.value} OPEN>"


class TestMaskPaths:
    """Large masked frames take apply_mask's numpy or translate path, whole (fast path) or streamed."""

    @pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "no-numpy"])
    @pytest.mark.parametrize(
        ("size", "step"),
        [
            *[pytest.param(n, None, id=f"{n}-whole") for n in (767, 768, 1025, 4099, 65000)],
            *[pytest.param(n, 997, id=f"{n}-997-byte-chunks") for n in (767, 768, 1025, 4099, 65000)],
            *[pytest.param(n, 1, id=f"{n}-bytewise") for n in (1025, 4099)],
        ],
    )
    def test_large_masked_text(self, monkeypatch: pytest.MonkeyPatch, numpy: bool, size: int, step: int | None) -> None:
        assert mask.HAVE_NUMPY or not numpy, "numpy is part of the test environment (make test installs it)"
        monkeypatch.setattr(mask, "HAVE_NUMPY", numpy)
        text = ("aé€😀" * size)[: size // 2]
        payload = text.encode()[:size]
        payload = payload.decode("utf-8", "ignore").encode()
        conn = server_after_handshake()
        data = frame(Opcode.TEXT, payload, mask_key=bytes([0x11, 0x8F, 0xE3, 0x5A]))
        assert feed(conn, data, step) == [TextMessage(payload.decode())]

    @pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "no-numpy"])
    def test_large_masked_binary_in_fragments(self, monkeypatch: pytest.MonkeyPatch, numpy: bool) -> None:
        assert mask.HAVE_NUMPY or not numpy, "numpy is part of the test environment (make test installs it)"
        monkeypatch.setattr(mask, "HAVE_NUMPY", numpy)
        payload = bytes(range(256)) * 20
        conn = server_after_handshake()
        first = encode_frame(Opcode.BINARY, payload[:2049], fin=False, mask=True)
        data = first + encode_frame(Opcode.CONT, payload[2049:], mask=True)
        assert feed(conn, data, 1003) == [BinaryMessage(payload)]

    @pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "no-numpy"])
    def test_client_masks_large_frames(self, monkeypatch: pytest.MonkeyPatch, numpy: bool) -> None:
        assert mask.HAVE_NUMPY or not numpy, "numpy is part of the test environment (make test installs it)"
        monkeypatch.setattr(mask, "HAVE_NUMPY", numpy)
        conn = client_after_handshake()
        payload = bytes(range(256)) * 40 + b"odd"
        conn.send_binary(payload)
        assert sent_frames(conn) == [(Opcode.BINARY, payload)]

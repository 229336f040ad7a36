"""The sans-I/O Connection after the handshake (RFC 6455 sections 5-7): one class per topic, every rule a row,
each run on both sides, with bytes in and events, bytes out and the close code asserted."""

from __future__ import annotations

import pytest

from signaling.ws import mask
from signaling.ws.connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Side, State
from signaling.ws.events import BinaryMessage, CloseReceived, Event, Failed, PingReceived, PongReceived, TextMessage
from signaling.ws.exceptions import (
    ConnectionClosed,
    HandshakeError,
    InvalidState,
    InvalidUtf8,
    MessageTooBig,
    ProtocolError,
    UnsupportedData,
    WebSocketError,
)
from signaling.ws.frames import CloseCode, Opcode

from .helpers import (
    BINARY,
    CLOSE,
    CONT,
    MASK,
    PING,
    PONG,
    TEXT,
    after_handshake,
    assert_failed,
    client_after_handshake,
    client_frame,
    close_body,
    feed,
    flags,
    peer_frame,
    read_frames,
    sent_frames,
    server_after_handshake,
    server_frame,
)

SIDES = [pytest.param(Side.SERVER, id="server"), pytest.param(Side.CLIENT, id="client")]
STEPS = [pytest.param(None, id="whole"), pytest.param(1, id="bytewise")]


@pytest.fixture(params=SIDES)
def side(request: pytest.FixtureRequest) -> Side:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def conn(side: Side) -> Connection:
    return after_handshake(side)


def header_len(conn: Connection, length: int) -> int:
    """Bytes of a peer frame's header (mask key included) for a payload of ``length``."""
    base = 2 if length < 126 else 4 if length < 65536 else 10
    return base if conn.is_client else base + 4


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
        data = peer_frame(conn, BINARY, payload)
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
            pytest.param("898537fa213d7f9f4d5158", [PingReceived(b"Hello")], [(PONG, b"Hello")], id="masked-ping"),
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

    @pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, PONG, CLOSE], ids=lambda o: Opcode(o).name)
    def test_unmasked_client_frame_is_1002(self, opcode: int) -> None:
        conn = server_after_handshake()
        payload = b"\x03\xe8" if opcode == CLOSE else b"x"
        assert_failed(conn, conn.receive_data(server_frame(opcode, payload)), 1002)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, PONG, CLOSE], ids=lambda o: Opcode(o).name)
    def test_masked_server_frame_is_1002(self, opcode: int) -> None:
        conn = client_after_handshake()
        payload = b"\x03\xe8" if opcode == CLOSE else b"x"
        assert_failed(conn, conn.receive_data(client_frame(opcode, payload)), 1002)

    @pytest.mark.parametrize("rsv", range(1, 8), ids=lambda r: f"rsv{r:03b}")
    @pytest.mark.parametrize("opcode", [TEXT, BINARY, PING], ids=lambda o: Opcode(o).name)
    def test_rsv_bits_are_1002(self, conn: Connection, rsv: int, opcode: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, opcode, b"x", rsv=rsv)), 1002)

    def test_rsv_on_continuation_is_1002(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, TEXT, b"a", fin=False)) == []
        assert_failed(conn, conn.receive_data(peer_frame(conn, CONT, b"b", rsv=4)), 1002)

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF], ids=lambda o: f"{o:#x}")
    def test_reserved_opcodes_are_1002(self, conn: Connection, opcode: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, opcode, b"x")), 1002)

    def test_reserved_opcode_inside_fragmented_message_is_1002(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, TEXT, b"a", fin=False)) == []
        assert_failed(conn, conn.receive_data(peer_frame(conn, 0xB, b"")), 1002)

    @pytest.mark.parametrize("high", [0x80, 0xFF], ids=["msb-only", "all-ones"])
    def test_64bit_length_with_msb_is_1002(self, side: Side, high: int) -> None:
        conn = after_handshake(side, max_message_size=None)
        head = b"\x82" + bytes([0x7F | (0 if conn.is_client else 0x80)]) + bytes([high]) + b"\x00" * 7
        if not conn.is_client:
            head += MASK
        assert_failed(conn, conn.receive_data(head), 1002)

    def test_partial_header_waits(self, conn: Connection) -> None:
        data = peer_frame(conn, BINARY, b"x" * 300)
        for i in range(header_len(conn, 300)):
            assert conn.receive_data(data[i : i + 1]) == []
        assert conn.state is State.OPEN


# ------------------------------------------------------------------------------------------------ messages


class TestFragmentation:
    @pytest.mark.parametrize("step", [None, 1, 3], ids=["whole", "bytewise", "3-byte"])
    def test_text_in_three_fragments(self, conn: Connection, step: int | None) -> None:
        data = (
            peer_frame(conn, TEXT, b"Hel", fin=False)
            + peer_frame(conn, CONT, b"lo, ", fin=False)
            + peer_frame(conn, CONT, "wörld".encode())
        )
        assert feed(conn, data, step) == [TextMessage("Hello, wörld")]

    def test_binary_fragments(self, conn: Connection) -> None:
        data = peer_frame(conn, BINARY, b"\x00\x01", fin=False) + peer_frame(conn, CONT, b"\x02")
        assert conn.receive_data(data) == [BinaryMessage(b"\x00\x01\x02")]

    def test_empty_fragments(self, conn: Connection) -> None:
        data = (
            peer_frame(conn, TEXT, b"", fin=False)
            + peer_frame(conn, CONT, b"", fin=False)
            + peer_frame(conn, CONT, b"")
        )
        assert conn.receive_data(data) == [TextMessage("")]

    def test_empty_messages(self, conn: Connection) -> None:
        data = peer_frame(conn, TEXT, b"") + peer_frame(conn, BINARY, b"")
        assert conn.receive_data(data) == [TextMessage(""), BinaryMessage(b"")]

    def test_messages_follow_each_other(self, conn: Connection) -> None:
        data = (
            peer_frame(conn, TEXT, b"a", fin=False)
            + peer_frame(conn, CONT, b"b")
            + peer_frame(conn, BINARY, b"c", fin=False)
            + peer_frame(conn, CONT, b"d")
        )
        assert conn.receive_data(data) == [TextMessage("ab"), BinaryMessage(b"cd")]

    @pytest.mark.parametrize("step", [None, 1], ids=["whole", "bytewise"])
    def test_control_frames_between_fragments(self, conn: Connection, step: int | None) -> None:
        data = (
            peer_frame(conn, TEXT, b"He", fin=False)
            + peer_frame(conn, PING, b"p1")
            + peer_frame(conn, CONT, b"ll", fin=False)
            + peer_frame(conn, PONG, b"p2")
            + peer_frame(conn, PING, b"")
            + peer_frame(conn, CONT, b"o")
        )
        assert feed(conn, data, step) == [
            PingReceived(b"p1"),
            PongReceived(b"p2"),
            PingReceived(b""),
            TextMessage("Hello"),
        ]
        assert sent_frames(conn) == [(PONG, b"p1"), (PONG, b"")]

    def test_close_between_fragments(self, conn: Connection) -> None:
        data = (
            peer_frame(conn, TEXT, b"He", fin=False)
            + peer_frame(conn, CLOSE, close_body(1001))
            + peer_frame(conn, CONT, b"llo")
        )
        assert conn.receive_data(data) == [CloseReceived(1001, "")]
        assert sent_frames(conn) == [(CLOSE, close_body(1001))]

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE], ids=lambda o: Opcode(o).name)
    def test_fragmented_control_frame_is_1002(self, conn: Connection, opcode: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, opcode, b"", fin=False)), 1002)

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE], ids=lambda o: Opcode(o).name)
    @pytest.mark.parametrize("size", [126, 65536], ids=["126", "65536"])
    def test_control_frame_over_125_is_1002(self, conn: Connection, opcode: int, size: int) -> None:
        payload = close_body(1000, b"x" * (size - 2)) if opcode == CLOSE else b"x" * size
        # Decided from the header: the payload never needs to arrive.
        header = peer_frame(conn, opcode, payload)[: header_len(conn, size)]
        assert_failed(conn, conn.receive_data(header), 1002)

    def test_control_frame_of_125_is_fine(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, PING, b"x" * 125)) == [PingReceived(b"x" * 125)]
        assert sent_frames(conn) == [(PONG, b"x" * 125)]

    @pytest.mark.parametrize("fin", [True, False], ids=["fin", "no-fin"])
    def test_continuation_without_message_is_1002(self, conn: Connection, fin: bool) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, CONT, b"x", fin=fin)), 1002)

    def test_continuation_after_finished_message_is_1002(self, conn: Connection) -> None:
        data = peer_frame(conn, TEXT, b"a", fin=False) + peer_frame(conn, CONT, b"b")
        events = conn.receive_data(data + peer_frame(conn, CONT, b"c"))
        assert events[0] == TextMessage("ab")
        assert_failed(conn, events, 1002)

    @pytest.mark.parametrize(
        ("first", "second"),
        [(TEXT, TEXT), (TEXT, BINARY), (BINARY, TEXT), (BINARY, BINARY)],
        ids=lambda o: Opcode(o).name,
    )
    @pytest.mark.parametrize("fin", [True, False], ids=["new-fin", "new-no-fin"])
    def test_new_data_frame_inside_fragmented_message_is_1002(
        self, conn: Connection, first: int, second: int, fin: bool
    ) -> None:
        data = peer_frame(conn, first, b"a", fin=False) + peer_frame(conn, second, b"b", fin=fin)
        assert_failed(conn, conn.receive_data(data), 1002)


# UTF-8 violations: (bytes, index within them of the byte that makes them invalid).
INVALID_UTF8 = [
    pytest.param(b"\xff", 0, id="ff"),
    pytest.param(b"\xfe", 0, id="fe"),
    pytest.param(b"\x80", 0, id="lone-continuation"),
    pytest.param(b"\xc0\xaf", 0, id="overlong-c0-af"),
    pytest.param(b"\xc1\xbf", 0, id="overlong-c1-bf"),
    pytest.param(b"\xe0\x80\xaf", 1, id="overlong-e0-80-af"),
    pytest.param(b"\xe0\x9f\xbf", 1, id="overlong-e0-9f-bf"),
    pytest.param(b"\xf0\x80\x80\xaf", 1, id="overlong-f0-80-80-af"),
    pytest.param(b"\xed\xa0\x80", 1, id="surrogate-ed-a0-80"),
    pytest.param(b"\xed\xbf\xbf", 1, id="surrogate-ed-bf-bf"),
    pytest.param(b"\xf4\x90\x80\x80", 1, id="above-10ffff-f4-90-80-80"),
    pytest.param(b"\xf5\x80\x80\x80", 0, id="f5"),
    pytest.param(b"\xe2\x82A", 2, id="truncated-then-ascii"),
]
PREFIX = "ok é ".encode()
SUFFIX = b" and more"


class TestUtf8:
    @pytest.mark.parametrize("char", ["é", "€", "😀", "\U0010ffff"])
    def test_code_point_split_across_frames(self, conn: Connection, char: str) -> None:
        raw = ("a" + char + "b").encode()
        for cut in range(1, len(raw)):
            data = peer_frame(conn, TEXT, raw[:cut], fin=False) + peer_frame(conn, CONT, raw[cut:])
            assert conn.receive_data(data) == [TextMessage("a" + char + "b")]

    @pytest.mark.parametrize("char", ["é", "€", "😀"])
    def test_code_point_split_across_chunks_and_fragments(self, conn: Connection, char: str) -> None:
        raw = (char * 3).encode()
        data = peer_frame(conn, TEXT, raw[:5], fin=False) + peer_frame(conn, CONT, raw[5:])
        assert feed(conn, data, 1) == [TextMessage(char * 3)]

    @pytest.mark.parametrize(
        "text",
        ["\x00\x7f", "\x80\u07ff", "\u0800\ud7ff", "\ue000\uffff", "\U00010000\U0010ffff"],
        ids=["1-byte", "2-byte", "3-byte-below-surrogates", "3-byte-above-surrogates", "4-byte"],
    )
    @pytest.mark.parametrize("step", [None, 1], ids=["whole", "bytewise"])
    def test_boundary_code_points_are_valid(self, conn: Connection, text: str, step: int | None) -> None:
        assert feed(conn, peer_frame(conn, TEXT, text.encode()), step) == [TextMessage(text)]

    @pytest.mark.parametrize(("bad", "where"), INVALID_UTF8)
    def test_single_frame_is_1007(self, conn: Connection, bad: bytes, where: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, TEXT, PREFIX + bad + SUFFIX)), 1007)

    @pytest.mark.parametrize(("bad", "where"), INVALID_UTF8)
    def test_fails_on_the_fragment_with_the_bad_byte(self, conn: Connection, bad: bytes, where: int) -> None:
        assert conn.receive_data(peer_frame(conn, TEXT, PREFIX, fin=False)) == []
        # Not the final fragment: the failure does not wait for the end of the message.
        events = conn.receive_data(peer_frame(conn, CONT, bad[: where + 1], fin=False))
        assert_failed(conn, events, 1007)

    @pytest.mark.parametrize(("bad", "where"), INVALID_UTF8)
    def test_fails_on_the_partial_frame_with_the_bad_byte(self, conn: Connection, bad: bytes, where: int) -> None:
        """A frame declared 1000 bytes long: the 1007 comes with the chunk holding the bad byte."""
        payload = PREFIX + bad + SUFFIX
        payload += b"x" * (1000 - len(payload))
        data = peer_frame(conn, TEXT, payload)
        decisive = header_len(conn, 1000) + len(PREFIX) + where
        assert conn.receive_data(data[:decisive]) == []
        assert_failed(conn, conn.receive_data(data[decisive : decisive + 1]), 1007)

    @pytest.mark.parametrize(("bad", "where"), INVALID_UTF8)
    def test_fails_at_the_bad_byte_when_trickled(self, conn: Connection, bad: bytes, where: int) -> None:
        data = peer_frame(conn, TEXT, PREFIX, fin=False) + peer_frame(conn, CONT, bad + SUFFIX)
        decisive = len(peer_frame(conn, TEXT, PREFIX, fin=False)) + header_len(conn, 0) + where
        for i in range(decisive):
            assert conn.receive_data(data[i : i + 1]) == [], i
        assert_failed(conn, conn.receive_data(data[decisive : decisive + 1]), 1007)

    @pytest.mark.parametrize("tail", [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"], ids=["1-of-2", "2-of-3", "3-of-4"])
    @pytest.mark.parametrize("shape", ["single-frame", "fragmented", "trickled"])
    def test_message_ending_inside_a_code_point_is_1007(self, conn: Connection, tail: bytes, shape: str) -> None:
        if shape == "single-frame":
            events = conn.receive_data(peer_frame(conn, TEXT, b"ok" + tail))
        elif shape == "fragmented":
            assert conn.receive_data(peer_frame(conn, TEXT, b"ok", fin=False)) == []
            events = conn.receive_data(peer_frame(conn, CONT, tail))
        else:
            events = feed(conn, peer_frame(conn, TEXT, b"ok" + tail), 1)
        assert_failed(conn, events, 1007)

    def test_incomplete_code_point_not_at_the_end_of_a_fragment_is_fine(self, conn: Connection) -> None:
        data = peer_frame(conn, TEXT, b"\xe2", fin=False) + peer_frame(conn, CONT, b"\x82", fin=False)
        assert conn.receive_data(data) == []
        assert conn.receive_data(peer_frame(conn, CONT, b"\xac")) == [TextMessage("€")]

    def test_binary_is_not_validated(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, BINARY, b"\xff\xed\xa0\x80")) == [BinaryMessage(b"\xff\xed\xa0\x80")]

    def test_events_before_the_bad_message_are_kept(self, conn: Connection) -> None:
        data = peer_frame(conn, TEXT, b"good") + peer_frame(conn, TEXT, b"\xff")
        events = conn.receive_data(data)
        assert events[0] == TextMessage("good")
        assert_failed(conn, events, 1007)


class TestSizeLimit:
    LIMIT = 1000

    def limited(self, side: Side) -> Connection:
        return after_handshake(side, max_message_size=self.LIMIT)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
    def test_at_the_limit_is_fine(self, side: Side, opcode: int) -> None:
        conn = self.limited(side)
        events = conn.receive_data(peer_frame(conn, opcode, b"a" * self.LIMIT))
        assert len(events) == 1 and not isinstance(events[0], Failed)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
    @pytest.mark.parametrize("size", [1001, 65536, 1 << 40], ids=["16bit-1001", "64bit-65536", "64bit-1TiB"])
    def test_over_the_limit_from_the_header_alone(self, side: Side, opcode: int, size: int) -> None:
        conn = self.limited(side)
        header = peer_frame(conn, opcode, b"", length=size)
        assert len(header) == header_len(conn, size)
        assert_failed(conn, conn.receive_data(header), 1009)

    def test_7bit_length_over_a_small_limit(self, side: Side) -> None:
        conn = after_handshake(side, max_message_size=10)
        assert conn.receive_data(peer_frame(conn, TEXT, b"a" * 10)) == [TextMessage("a" * 10)]
        assert_failed(conn, conn.receive_data(peer_frame(conn, TEXT, b"", length=11)), 1009)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
    def test_fragmented_total_over_the_limit(self, side: Side, opcode: int) -> None:
        conn = self.limited(side)
        assert conn.receive_data(peer_frame(conn, opcode, b"a" * 600, fin=False)) == []
        assert conn.receive_data(peer_frame(conn, CONT, b"a" * 300, fin=False)) == []
        # The third fragment's header alone (101 bytes announced, 1001 in all) decides.
        assert_failed(conn, conn.receive_data(peer_frame(conn, CONT, b"", length=101)), 1009)

    def test_fragmented_total_at_the_limit_is_fine(self, side: Side) -> None:
        conn = self.limited(side)
        data = b"".join(peer_frame(conn, CONT if i else BINARY, b"a" * 100, fin=i == 9) for i in range(10))
        assert conn.receive_data(data) == [BinaryMessage(b"a" * 1000)]

    def test_many_small_fragments_over_the_limit(self, side: Side) -> None:
        conn = self.limited(side)
        data = b"".join(peer_frame(conn, CONT if i else TEXT, b"a" * 100, fin=False) for i in range(10))
        assert conn.receive_data(data) == []
        assert_failed(conn, conn.receive_data(peer_frame(conn, CONT, b"a")), 1009)

    def test_control_frames_do_not_count(self, side: Side) -> None:
        conn = self.limited(side)
        data = (
            peer_frame(conn, TEXT, b"a" * 900, fin=False)
            + peer_frame(conn, PING, b"p" * 125)
            + peer_frame(conn, CONT, b"a" * 100)
        )
        assert conn.receive_data(data) == [PingReceived(b"p" * 125), TextMessage("a" * 1000)]

    def test_limit_resets_between_messages(self, side: Side) -> None:
        conn = self.limited(side)
        data = peer_frame(conn, BINARY, b"a" * 800, fin=False) + peer_frame(conn, CONT, b"a" * 200)
        assert conn.receive_data(data + data) == [BinaryMessage(b"a" * 1000)] * 2

    def test_default_limit_is_64_kib(self, side: Side) -> None:
        assert DEFAULT_MAX_MESSAGE_SIZE == 65536
        conn = after_handshake(side)
        assert conn.receive_data(peer_frame(conn, BINARY, bytes(65536))) == [BinaryMessage(bytes(65536))]
        assert_failed(conn, conn.receive_data(peer_frame(conn, BINARY, b"", length=65537)), 1009)

    def test_no_limit(self, side: Side) -> None:
        conn = after_handshake(side, max_message_size=None)
        header = peer_frame(conn, BINARY, b"", length=(1 << 63) - 1)
        assert conn.receive_data(header) == []
        assert conn.state is State.OPEN


# ------------------------------------------------------------------------------------------ control frames


class TestPingPong:
    @pytest.mark.parametrize("payload", [b"", b"x", b"\x00\xff" * 62 + b"!"], ids=["empty", "1-byte", "125"])
    def test_ping_gets_pong_with_same_payload(self, conn: Connection, payload: bytes) -> None:
        assert conn.receive_data(peer_frame(conn, PING, payload)) == [PingReceived(payload)]
        if conn.is_client:
            assert sent_frames(conn) == [(PONG, payload)]
        else:
            assert conn.data_to_send() == server_frame(PONG, payload)

    def test_pongs_in_order(self, conn: Connection) -> None:
        data = peer_frame(conn, PING, b"1") + peer_frame(conn, PING, b"2")
        assert conn.receive_data(data) == [PingReceived(b"1"), PingReceived(b"2")]
        assert sent_frames(conn) == [(PONG, b"1"), (PONG, b"2")]

    def test_unsolicited_pong_is_ignored(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, PONG, b"beat")) == [PongReceived(b"beat")]
        assert conn.data_to_send() == b""
        assert conn.state is State.OPEN

    def test_no_pong_after_our_close(self, conn: Connection) -> None:
        conn.send_close()
        conn.data_to_send()
        assert conn.receive_data(peer_frame(conn, PING, b"late")) == [PingReceived(b"late")]
        assert conn.data_to_send() == b""

    def test_send_ping_and_pong(self, conn: Connection) -> None:
        conn.send_ping(b"a")
        conn.send_pong(b"b")
        conn.send_ping()
        assert sent_frames(conn) == [(PING, b"a"), (PONG, b"b"), (PING, b"")]

    @pytest.mark.parametrize("method", ["send_ping", "send_pong"])
    def test_send_control_over_125_is_refused(self, conn: Connection, method: str) -> None:
        with pytest.raises(ValueError):
            getattr(conn, method)(b"x" * 126)
        assert conn.data_to_send() == b""


class TestFailing:
    """A violation ends parsing at once; the close frame goes out with the next data_to_send(), after whatever
    the owner sent in answer to the events that came before the bad frame."""

    def test_answers_to_earlier_events_go_out_before_the_close(self, conn: Connection) -> None:
        data = peer_frame(conn, PING, b"p") + peer_frame(conn, TEXT, b"echo me") + peer_frame(conn, 3, b"")
        events = conn.receive_data(data)
        assert events[:2] == [PingReceived(b"p"), TextMessage("echo me")]
        assert isinstance(events[2], Failed) and events[2].code == 1002
        conn.send_text("echo me")  # the owner answers the message that preceded the bad frame
        out = sent_frames(conn)
        assert out[:2] == [(PONG, b"p"), (TEXT, b"echo me")]
        assert out[2] == (CLOSE, close_body(1002, events[2].reason.encode()))
        assert len(out) == 3
        assert flags(conn) == (State.CLOSED, True, False)
        assert conn.close_code == 1002

    def test_nothing_parsed_after_the_violation(self, conn: Connection) -> None:
        events = conn.receive_data(peer_frame(conn, 3, b"") + peer_frame(conn, TEXT, b"same chunk"))
        assert len(events) == 1 and isinstance(events[0], Failed)
        assert conn.receive_data(peer_frame(conn, TEXT, b"next chunk")) == []
        assert [op for op, _ in sent_frames(conn)] == [CLOSE]

    def test_eof_before_the_close_is_flushed(self, conn: Connection) -> None:
        conn.receive_data(peer_frame(conn, 3, b""))
        conn.receive_eof()
        assert conn.data_to_send() == b""  # the peer is gone: no close frame to send
        assert flags(conn) == (State.CLOSED, True, False)


VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 2000, 2999, 5000, 65535]


class TestClose:
    @staticmethod
    def assert_closed_by_peer(conn: Connection) -> None:
        assert conn.state is State.CLOSED
        if conn.is_client:
            # 7.1.1: the server closes TCP first; the client waits for it (under the owner's timer).
            assert not conn.close_transport
            assert conn.close_expected
        else:
            assert conn.close_transport
            assert not conn.close_expected

    @pytest.mark.parametrize("code", VALID_CLOSE_CODES, ids=str)
    def test_echo_the_peers_code(self, conn: Connection, code: int) -> None:
        events = conn.receive_data(peer_frame(conn, CLOSE, close_body(code, "résumé".encode())))
        assert events == [CloseReceived(code, "résumé")]
        if conn.is_client:
            assert sent_frames(conn) == [(CLOSE, close_body(code))]
        else:
            assert conn.data_to_send() == b"\x88\x02" + close_body(code)
        assert conn.close_rcvd == (code, "résumé")
        assert conn.close_sent == (code, "")
        assert conn.close_code == code
        self.assert_closed_by_peer(conn)

    def test_empty_close_is_echoed_empty(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, CLOSE, b"")) == [CloseReceived(CloseCode.NO_STATUS, "")]
        if conn.is_client:
            assert sent_frames(conn) == [(CLOSE, b"")]
        else:
            assert conn.data_to_send() == b"\x88\x00"
        assert conn.close_code == 1005
        self.assert_closed_by_peer(conn)

    @pytest.mark.parametrize("code", INVALID_CLOSE_CODES, ids=str)
    def test_invalid_code_is_1002(self, conn: Connection, code: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, CLOSE, close_body(code))), 1002)

    def test_one_byte_payload_is_1002(self, conn: Connection) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, CLOSE, b"\x03")), 1002)

    @pytest.mark.parametrize(
        "reason",
        [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82"],
        ids=["ff", "overlong", "surrogate", "above-10ffff", "truncated"],
    )
    def test_reason_not_utf8_is_1007(self, conn: Connection, reason: bytes) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, CLOSE, close_body(1000, reason))), 1007)

    @pytest.mark.parametrize("step", [None, 1], ids=["same-chunk", "bytewise"])
    def test_nothing_processed_after_close(self, conn: Connection, step: int | None) -> None:
        data = (
            peer_frame(conn, CLOSE, close_body(1000))
            + peer_frame(conn, TEXT, b"after")
            + peer_frame(conn, PING, b"p")
            + b"\xff\xff garbage"
        )
        assert feed(conn, data, step) == [CloseReceived(1000, "")]
        assert sent_frames(conn) == [(CLOSE, close_body(1000))]
        assert conn.receive_data(peer_frame(conn, TEXT, b"later")) == []
        assert conn.data_to_send() == b""

    def test_nothing_processed_after_close_mid_message(self, conn: Connection) -> None:
        conn.receive_data(peer_frame(conn, TEXT, b"a", fin=False))
        assert conn.receive_data(peer_frame(conn, CLOSE, b"") + peer_frame(conn, CONT, b"b")) == [
            CloseReceived(1005, "")
        ]

    @pytest.mark.parametrize("how", ["close-received", "close-sent", "failed", "eof"])
    @pytest.mark.parametrize(
        "action",
        ["send_text", "send_binary", "send_frame", "send_ping", "send_pong"],
    )
    def test_send_after_close_raises(self, conn: Connection, how: str, action: str) -> None:
        if how == "close-received":
            conn.receive_data(peer_frame(conn, CLOSE, b""))
        elif how == "close-sent":
            conn.send_close()
        elif how == "failed":
            conn.receive_data(peer_frame(conn, 3, b""))
        else:
            conn.receive_eof()
        conn.data_to_send()
        calls = {
            "send_text": lambda: conn.send_text("x"),
            "send_binary": lambda: conn.send_binary(b"x"),
            "send_frame": lambda: conn.send_frame(Opcode.TEXT, b"x"),
            "send_ping": lambda: conn.send_ping(b"x"),
            "send_pong": lambda: conn.send_pong(b"x"),
        }
        with pytest.raises(InvalidState):
            calls[action]()
        assert conn.data_to_send() == b""

    def test_send_close_twice_sends_one_frame(self, conn: Connection) -> None:
        conn.send_close(1001, "away")
        conn.send_close(1000)
        conn.send_close(None)
        assert sent_frames(conn) == [(CLOSE, close_body(1001, b"away"))]
        assert conn.close_sent == (1001, "away")
        assert conn.state is State.CLOSING

    def test_send_close_after_close_received_sends_nothing(self, conn: Connection) -> None:
        conn.receive_data(peer_frame(conn, CLOSE, close_body(1000)))
        conn.data_to_send()
        conn.send_close(1001)
        assert conn.data_to_send() == b""

    def test_server_initiated_close_then_peers_close(self) -> None:
        conn = server_after_handshake()
        conn.send_close(1000, "bye")
        assert conn.data_to_send() == b"\x88\x05\x03\xe8bye"
        assert flags(conn) == (State.CLOSING, False, True)
        assert conn.receive_data(client_frame(CLOSE, close_body(1000))) == [CloseReceived(1000, "")]
        assert conn.data_to_send() == b""  # no second close frame
        # Nothing more to wait for: the server closes TCP now.
        assert flags(conn) == (State.CLOSED, True, False)
        assert conn.close_sent == (1000, "bye") and conn.close_rcvd == (1000, "")

    def test_client_initiated_close_then_servers_close_then_eof(self) -> None:
        conn = client_after_handshake()
        conn.send_close(4000, "done")
        assert sent_frames(conn) == [(CLOSE, close_body(4000, b"done"))]
        assert conn.receive_data(server_frame(CLOSE, close_body(4000))) == [CloseReceived(4000, "")]
        assert conn.data_to_send() == b""
        assert flags(conn) == (State.CLOSED, False, True)  # waiting for the server's TCP close
        assert conn.receive_eof() == []
        assert flags(conn) == (State.CLOSED, True, False)

    def test_peer_answers_with_another_code(self, conn: Connection) -> None:
        conn.send_close(1000)
        conn.data_to_send()
        assert conn.receive_data(peer_frame(conn, CLOSE, close_body(1001))) == [CloseReceived(1001, "")]
        assert conn.close_code == 1001

    def test_messages_still_delivered_while_closing(self, conn: Connection) -> None:
        conn.send_close()
        conn.data_to_send()
        data = peer_frame(conn, TEXT, b"in flight") + peer_frame(conn, CLOSE, close_body(1000))
        assert conn.receive_data(data) == [TextMessage("in flight"), CloseReceived(1000, "")]
        assert conn.data_to_send() == b""

    def test_violation_while_closing_sends_no_second_close(self, conn: Connection) -> None:
        conn.send_close()
        conn.data_to_send()
        events = conn.receive_data(peer_frame(conn, CLOSE, close_body(999)))
        assert events == [Failed(1002, events[0].reason)]  # type: ignore[union-attr]
        assert conn.data_to_send() == b""
        assert conn.state is State.CLOSED and conn.close_transport

    def test_send_close_without_code(self, conn: Connection) -> None:
        conn.send_close(None)
        assert sent_frames(conn) == [(CLOSE, b"")]
        assert conn.close_sent == (1005, "")

    @pytest.mark.parametrize(("code", "reason"), [(1005, ""), (1006, ""), (999, ""), (None, "why")])
    def test_send_close_misuse(self, conn: Connection, code: int | None, reason: str) -> None:
        if code == 1005:
            conn.send_close(code, reason)  # 1005 means "no code": an empty close
            assert sent_frames(conn) == [(CLOSE, b"")]
            return
        with pytest.raises(ValueError):
            conn.send_close(code, reason)
        assert conn.state is State.OPEN
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("method", ["send_close", "fail"])
    def test_long_reason_is_truncated_on_a_character_boundary(self, conn: Connection, method: str) -> None:
        getattr(conn, method)(1000 if method == "send_close" else 1008, "é" * 100)
        ((opcode, payload),) = sent_frames(conn)
        assert opcode == CLOSE
        assert len(payload) == 124  # 2 + 61 two-byte characters: 123 would split one
        assert payload[2:].decode() == "é" * 61

    def test_fail_by_owner(self, conn: Connection) -> None:
        conn.fail(1008, "policy")
        assert sent_frames(conn) == [(CLOSE, close_body(1008, b"policy"))]
        assert conn.state is State.CLOSED and conn.close_transport and not conn.close_expected
        assert conn.close_code == 1008
        assert conn.receive_data(peer_frame(conn, TEXT, b"x")) == []

    def test_eof_without_close_is_1006(self, conn: Connection) -> None:
        conn.receive_data(peer_frame(conn, TEXT, b"partial")[:4])
        assert conn.receive_eof() == []
        assert conn.state is State.CLOSED and conn.close_transport
        assert conn.close_code == CloseCode.ABNORMAL
        assert conn.receive_data(peer_frame(conn, TEXT, b"x")) == []
        assert conn.data_to_send() == b""

    def test_close_before_handshake_is_misuse(self, side: Side) -> None:
        with pytest.raises(InvalidState):
            Connection(side).send_close()


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
        data = client_frame(TEXT, payload, mask_key=bytes([0x11, 0x8F, 0xE3, 0x5A]))
        assert feed(conn, data, step) == [TextMessage(payload.decode())]

    @pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "no-numpy"])
    def test_large_masked_binary_in_fragments(self, monkeypatch: pytest.MonkeyPatch, numpy: bool) -> None:
        assert mask.HAVE_NUMPY or not numpy, "numpy is part of the test environment (make test installs it)"
        monkeypatch.setattr(mask, "HAVE_NUMPY", numpy)
        payload = bytes(range(256)) * 20
        conn = server_after_handshake()
        data = client_frame(BINARY, payload[:2049], fin=False) + client_frame(CONT, payload[2049:])
        assert feed(conn, data, 1003) == [BinaryMessage(payload)]

    @pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "no-numpy"])
    def test_client_masks_large_frames(self, monkeypatch: pytest.MonkeyPatch, numpy: bool) -> None:
        assert mask.HAVE_NUMPY or not numpy, "numpy is part of the test environment (make test installs it)"
        monkeypatch.setattr(mask, "HAVE_NUMPY", numpy)
        conn = client_after_handshake()
        payload = bytes(range(256)) * 40 + b"odd"
        conn.send_binary(payload)
        assert sent_frames(conn) == [(BINARY, payload)]


class TestErrors:
    @pytest.mark.parametrize(
        ("error", "code"),
        [(ProtocolError, 1002), (InvalidUtf8, 1007), (MessageTooBig, 1009), (UnsupportedData, 1003)],
        ids=lambda v: getattr(v, "__name__", str(v)),
    )
    def test_close_codes(self, error: type[ProtocolError], code: int) -> None:
        exc = error("why")
        assert exc.close_code == code
        assert exc.reason == "why"
        assert isinstance(exc, ProtocolError) and isinstance(exc, WebSocketError)
        assert not isinstance(exc, ValueError)

    def test_explicit_close_code(self) -> None:
        assert ProtocolError("policy", 1008).close_code == 1008

    def test_handshake_error(self) -> None:
        exc = HandshakeError(426, "version", [("Sec-WebSocket-Version", "13")])
        assert (exc.status, exc.reason, exc.headers) == (426, "version", [("Sec-WebSocket-Version", "13")])
        assert str(exc) == "426 version"

    def test_connection_closed(self) -> None:
        exc = ConnectionClosed(1000, "bye", sent_code=1000)
        assert (exc.code, exc.reason, exc.sent_code) == (1000, "bye", 1000)
        assert str(ConnectionClosed(1006)) == "connection closed: 1006"

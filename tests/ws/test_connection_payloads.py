"""What a data message may carry, through the sans-I/O Connection: text must be UTF-8 (RFC 6455 5.6, 8.1), checked
as it arrives, fragment by fragment and byte by byte; and no message may pass the size limit (10.4), decided from
the header alone where it can be. Each rule runs on both sides."""

from __future__ import annotations

import pytest

from signaling.ws.connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Side, State
from signaling.ws.events import BinaryMessage, Failed, PingReceived, TextMessage
from signaling.ws.frames import Opcode

from .helpers import after_handshake, assert_failed, feed, header_len, peer_frame

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
            data = peer_frame(conn, Opcode.TEXT, raw[:cut], fin=False) + peer_frame(conn, Opcode.CONT, raw[cut:])
            assert conn.receive_data(data) == [TextMessage("a" + char + "b")]

    @pytest.mark.parametrize("char", ["é", "€", "😀"])
    def test_code_point_split_across_chunks_and_fragments(self, conn: Connection, char: str) -> None:
        raw = (char * 3).encode()
        data = peer_frame(conn, Opcode.TEXT, raw[:5], fin=False) + peer_frame(conn, Opcode.CONT, raw[5:])
        assert feed(conn, data, 1) == [TextMessage(char * 3)]

    @pytest.mark.parametrize(
        "text",
        ["\x00\x7f", "\x80\u07ff", "\u0800\ud7ff", "\ue000\uffff", "\U00010000\U0010ffff"],
        ids=["1-byte", "2-byte", "3-byte-below-surrogates", "3-byte-above-surrogates", "4-byte"],
    )
    @pytest.mark.parametrize("step", [None, 1], ids=["whole", "bytewise"])
    def test_boundary_code_points_are_valid(self, conn: Connection, text: str, step: int | None) -> None:
        assert feed(conn, peer_frame(conn, Opcode.TEXT, text.encode()), step) == [TextMessage(text)]

    @pytest.mark.parametrize(("bad", "where"), INVALID_UTF8)
    def test_single_frame_is_1007(self, conn: Connection, bad: bytes, where: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.TEXT, PREFIX + bad + SUFFIX)), 1007)

    @pytest.mark.parametrize(("bad", "where"), INVALID_UTF8)
    def test_fails_on_the_fragment_with_the_bad_byte(self, conn: Connection, bad: bytes, where: int) -> None:
        assert conn.receive_data(peer_frame(conn, Opcode.TEXT, PREFIX, fin=False)) == []
        # Not the final fragment: the failure does not wait for the end of the message.
        events = conn.receive_data(peer_frame(conn, Opcode.CONT, bad[: where + 1], fin=False))
        assert_failed(conn, events, 1007)

    @pytest.mark.parametrize(("bad", "where"), INVALID_UTF8)
    def test_fails_on_the_partial_frame_with_the_bad_byte(self, conn: Connection, bad: bytes, where: int) -> None:
        """A frame declared 1000 bytes long: the 1007 comes with the chunk holding the bad byte."""
        payload = PREFIX + bad + SUFFIX
        payload += b"x" * (1000 - len(payload))
        data = peer_frame(conn, Opcode.TEXT, payload)
        decisive = header_len(conn, 1000) + len(PREFIX) + where
        assert conn.receive_data(data[:decisive]) == []
        assert_failed(conn, conn.receive_data(data[decisive : decisive + 1]), 1007)

    @pytest.mark.parametrize(("bad", "where"), INVALID_UTF8)
    def test_fails_at_the_bad_byte_when_trickled(self, conn: Connection, bad: bytes, where: int) -> None:
        data = peer_frame(conn, Opcode.TEXT, PREFIX, fin=False) + peer_frame(conn, Opcode.CONT, bad + SUFFIX)
        decisive = len(peer_frame(conn, Opcode.TEXT, PREFIX, fin=False)) + header_len(conn, 0) + where
        for i in range(decisive):
            assert conn.receive_data(data[i : i + 1]) == [], i
        assert_failed(conn, conn.receive_data(data[decisive : decisive + 1]), 1007)

    @pytest.mark.parametrize("tail", [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"], ids=["1-of-2", "2-of-3", "3-of-4"])
    @pytest.mark.parametrize("shape", ["single-frame", "fragmented", "trickled"])
    def test_message_ending_inside_a_code_point_is_1007(self, conn: Connection, tail: bytes, shape: str) -> None:
        if shape == "single-frame":
            events = conn.receive_data(peer_frame(conn, Opcode.TEXT, b"ok" + tail))
        elif shape == "fragmented":
            assert conn.receive_data(peer_frame(conn, Opcode.TEXT, b"ok", fin=False)) == []
            events = conn.receive_data(peer_frame(conn, Opcode.CONT, tail))
        else:
            events = feed(conn, peer_frame(conn, Opcode.TEXT, b"ok" + tail), 1)
        assert_failed(conn, events, 1007)

    def test_incomplete_code_point_not_at_the_end_of_a_fragment_is_fine(self, conn: Connection) -> None:
        data = peer_frame(conn, Opcode.TEXT, b"\xe2", fin=False) + peer_frame(conn, Opcode.CONT, b"\x82", fin=False)
        assert conn.receive_data(data) == []
        assert conn.receive_data(peer_frame(conn, Opcode.CONT, b"\xac")) == [TextMessage("€")]

    def test_binary_is_not_validated(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, Opcode.BINARY, b"\xff\xed\xa0\x80")) == [
            BinaryMessage(b"\xff\xed\xa0\x80")
        ]

    def test_events_before_the_bad_message_are_kept(self, conn: Connection) -> None:
        data = peer_frame(conn, Opcode.TEXT, b"good") + peer_frame(conn, Opcode.TEXT, b"\xff")
        events = conn.receive_data(data)
        assert events[0] == TextMessage("good")
        assert_failed(conn, events, 1007)


class TestSizeLimit:
    LIMIT = 1000

    def limited(self, side: Side) -> Connection:
        return after_handshake(side, max_message_size=self.LIMIT)

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY], ids=["text", "binary"])
    def test_at_the_limit_is_fine(self, side: Side, opcode: int) -> None:
        conn = self.limited(side)
        events = conn.receive_data(peer_frame(conn, opcode, b"a" * self.LIMIT))
        assert len(events) == 1 and not isinstance(events[0], Failed)

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY], ids=["text", "binary"])
    @pytest.mark.parametrize("size", [1001, 65536, 1 << 40], ids=["16bit-1001", "64bit-65536", "64bit-1TiB"])
    def test_over_the_limit_from_the_header_alone(self, side: Side, opcode: int, size: int) -> None:
        conn = self.limited(side)
        header = peer_frame(conn, opcode, b"", length=size)
        assert len(header) == header_len(conn, size)
        assert_failed(conn, conn.receive_data(header), 1009)

    def test_7bit_length_over_a_small_limit(self, side: Side) -> None:
        conn = after_handshake(side, max_message_size=10)
        assert conn.receive_data(peer_frame(conn, Opcode.TEXT, b"a" * 10)) == [TextMessage("a" * 10)]
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.TEXT, b"", length=11)), 1009)

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY], ids=["text", "binary"])
    def test_fragmented_total_over_the_limit(self, side: Side, opcode: int) -> None:
        conn = self.limited(side)
        assert conn.receive_data(peer_frame(conn, opcode, b"a" * 600, fin=False)) == []
        assert conn.receive_data(peer_frame(conn, Opcode.CONT, b"a" * 300, fin=False)) == []
        # The third fragment's header alone (101 bytes announced, 1001 in all) decides.
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.CONT, b"", length=101)), 1009)

    def test_fragmented_total_at_the_limit_is_fine(self, side: Side) -> None:
        conn = self.limited(side)
        data = b"".join(
            peer_frame(conn, Opcode.CONT if i else Opcode.BINARY, b"a" * 100, fin=i == 9) for i in range(10)
        )
        assert conn.receive_data(data) == [BinaryMessage(b"a" * 1000)]

    def test_many_small_fragments_over_the_limit(self, side: Side) -> None:
        conn = self.limited(side)
        data = b"".join(peer_frame(conn, Opcode.CONT if i else Opcode.TEXT, b"a" * 100, fin=False) for i in range(10))
        assert conn.receive_data(data) == []
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.CONT, b"a")), 1009)

    def test_control_frames_do_not_count(self, side: Side) -> None:
        conn = self.limited(side)
        data = (
            peer_frame(conn, Opcode.TEXT, b"a" * 900, fin=False)
            + peer_frame(conn, Opcode.PING, b"p" * 125)
            + peer_frame(conn, Opcode.CONT, b"a" * 100)
        )
        assert conn.receive_data(data) == [PingReceived(b"p" * 125), TextMessage("a" * 1000)]

    def test_limit_resets_between_messages(self, side: Side) -> None:
        conn = self.limited(side)
        data = peer_frame(conn, Opcode.BINARY, b"a" * 800, fin=False) + peer_frame(conn, Opcode.CONT, b"a" * 200)
        assert conn.receive_data(data + data) == [BinaryMessage(b"a" * 1000)] * 2

    def test_default_limit_is_64_kib(self, side: Side) -> None:
        assert DEFAULT_MAX_MESSAGE_SIZE == 65536
        conn = after_handshake(side)
        assert conn.receive_data(peer_frame(conn, Opcode.BINARY, bytes(65536))) == [BinaryMessage(bytes(65536))]
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.BINARY, b"", length=65537)), 1009)

    def test_no_limit(self, side: Side) -> None:
        conn = after_handshake(side, max_message_size=None)
        header = peer_frame(conn, Opcode.BINARY, b"", length=(1 << 63) - 1)
        assert conn.receive_data(header) == []
        assert conn.state is State.OPEN

"""The core's limits on what one message may cost: its fragments, and the memory an unfinished one holds."""

from __future__ import annotations

import tracemalloc

import pytest

from signaling.ws.connection import Side
from signaling.ws.events import BinaryMessage, TextMessage
from signaling.ws.frames import Opcode

from .helpers import after_handshake, assert_failed, peer_frame


@pytest.mark.parametrize("side", list(Side), ids=lambda s: s.value)
def test_fragments_over_the_limit_fail_with_1009(side: Side) -> None:
    conn = after_handshake(side, max_fragments=4)
    data = peer_frame(conn, Opcode.TEXT, b"a", fin=False) + b"".join(
        peer_frame(conn, Opcode.CONT, b"b", fin=False) for _ in range(3)
    )
    assert conn.receive_data(data) == []
    assert conn.message_in_progress
    events = conn.receive_data(peer_frame(conn, Opcode.CONT, b"c"))
    assert_failed(conn, events, 1009)
    assert "over 4 frames" in events[-1].reason  # type: ignore[union-attr]


def test_the_limit_counts_per_message() -> None:
    conn = after_handshake(Side.SERVER, max_fragments=3)
    for _ in range(3):
        data = b"".join(
            peer_frame(conn, opcode, b"x", fin=fin)
            for opcode, fin in ((Opcode.BINARY, False), (Opcode.CONT, False), (Opcode.CONT, True))
        )
        assert conn.receive_data(data) == [BinaryMessage(b"xxx")]
    assert not conn.message_in_progress
    assert conn.frames_streamed == 9


def test_a_frame_split_across_reads_is_a_message_in_progress() -> None:
    conn = after_handshake(Side.SERVER)
    data = peer_frame(conn, Opcode.TEXT, b"hello there")
    assert conn.receive_data(data[:8]) == []
    assert conn.message_in_progress
    assert conn.receive_data(data[8:]) == [TextMessage("hello there")]
    assert not conn.message_in_progress


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY], ids=["text", "binary"])
def test_an_unfinished_message_holds_little_more_than_its_size(opcode: Opcode) -> None:
    """60,000 one-byte fragments used to cost ~50 bytes of object header each (30x the message)."""
    conn = after_handshake(Side.SERVER, max_fragments=10**6, max_message_size=1 << 20)
    count = 60_000
    data = peer_frame(conn, opcode, b"a", fin=False) + b"".join(
        peer_frame(conn, Opcode.CONT, b"a", fin=False) for _ in range(count)
    )
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(0, len(data), 64 * 1024):
            assert conn.receive_data(data[i : i + 64 * 1024]) == []
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert conn.message_in_progress
    assert held < 4 * count, held  # the 60 KB of payload plus small change, not 3 MB
    end = conn.receive_data(peer_frame(conn, Opcode.CONT, b"!"))
    expected = "a" * (count + 1) + "!"
    assert end == [TextMessage(expected) if opcode == Opcode.TEXT else BinaryMessage(expected.encode())]


def test_control_frames_per_read_are_capped_before_the_rest_is_parsed() -> None:
    conn = after_handshake(Side.SERVER, max_frames_per_read=10)
    pings = b"".join(peer_frame(conn, Opcode.PING, b"p") for _ in range(11))
    events = conn.receive_data(pings + peer_frame(conn, Opcode.TEXT, b"never seen"))
    assert len(events) == 11  # ten pings, then the failure
    assert events[-1].code == 1008  # type: ignore[union-attr]
    assert not any(isinstance(e, TextMessage) for e in events)


def test_the_cap_is_per_read() -> None:
    conn = after_handshake(Side.SERVER, max_frames_per_read=10)
    for _ in range(5):
        pings = b"".join(peer_frame(conn, Opcode.PING, b"p") for _ in range(10))
        assert len(conn.receive_data(pings)) == 10

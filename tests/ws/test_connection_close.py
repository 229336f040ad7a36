"""The end of a connection, through the sans-I/O Connection: the closing handshake (RFC 6455 5.5.1, 7.1-7.4) from
either side, close codes and reasons, sending after close; and failing the connection on a violation (7.1.7).
Each rule runs on both sides."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from signaling.ws.connection import Connection, Side, State
from signaling.ws.events import CloseReceived, Failed, PingReceived, TextMessage
from signaling.ws.exceptions import ConnectionClosed, InvalidState
from signaling.ws.frames import CloseCode, Opcode, encode_frame

from .helpers import (
    INVALID_CLOSE_CODES,
    VALID_CLOSE_CODES,
    assert_failed,
    client_after_handshake,
    close_body,
    feed,
    flags,
    peer_frame,
    sent_frames,
    server_after_handshake,
)


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
        events = conn.receive_data(peer_frame(conn, Opcode.CLOSE, close_body(code, "résumé".encode())))
        assert events == [CloseReceived(code, "résumé")]
        if conn.is_client:
            assert sent_frames(conn) == [(Opcode.CLOSE, close_body(code))]
        else:
            assert conn.data_to_send() == b"\x88\x02" + close_body(code)
        assert conn.close_rcvd == (code, "résumé")
        assert conn.close_sent == (code, "")
        assert conn.close_code == code
        self.assert_closed_by_peer(conn)

    def test_empty_close_is_echoed_empty(self, conn: Connection) -> None:
        assert conn.receive_data(peer_frame(conn, Opcode.CLOSE, b"")) == [CloseReceived(CloseCode.NO_STATUS, "")]
        if conn.is_client:
            assert sent_frames(conn) == [(Opcode.CLOSE, b"")]
        else:
            assert conn.data_to_send() == b"\x88\x00"
        assert conn.close_code == 1005
        self.assert_closed_by_peer(conn)

    @pytest.mark.parametrize("code", INVALID_CLOSE_CODES, ids=str)
    def test_invalid_code_is_1002(self, conn: Connection, code: int) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.CLOSE, close_body(code))), 1002)

    def test_one_byte_payload_is_1002(self, conn: Connection) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.CLOSE, b"\x03")), 1002)

    @pytest.mark.parametrize(
        "reason",
        [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82"],
        ids=["ff", "overlong", "surrogate", "above-10ffff", "truncated"],
    )
    def test_reason_not_utf8_is_1007(self, conn: Connection, reason: bytes) -> None:
        assert_failed(conn, conn.receive_data(peer_frame(conn, Opcode.CLOSE, close_body(1000, reason))), 1007)

    @pytest.mark.parametrize("step", [None, 1], ids=["same-chunk", "bytewise"])
    def test_nothing_processed_after_close(self, conn: Connection, step: int | None) -> None:
        data = (
            peer_frame(conn, Opcode.CLOSE, close_body(1000))
            + peer_frame(conn, Opcode.TEXT, b"after")
            + peer_frame(conn, Opcode.PING, b"p")
            + b"\xff\xff garbage"
        )
        assert feed(conn, data, step) == [CloseReceived(1000, "")]
        assert sent_frames(conn) == [(Opcode.CLOSE, close_body(1000))]
        assert conn.receive_data(peer_frame(conn, Opcode.TEXT, b"later")) == []
        assert conn.data_to_send() == b""

    def test_nothing_processed_after_close_mid_message(self, conn: Connection) -> None:
        conn.receive_data(peer_frame(conn, Opcode.TEXT, b"a", fin=False))
        assert conn.receive_data(peer_frame(conn, Opcode.CLOSE, b"") + peer_frame(conn, Opcode.CONT, b"b")) == [
            CloseReceived(1005, "")
        ]

    @pytest.mark.parametrize("how", ["close-received", "close-sent", "failed", "eof"])
    @pytest.mark.parametrize(
        "action",
        ["send_text", "send_binary", "send_frame", "send_ping", "send_pong"],
    )
    def test_send_after_close_raises(self, conn: Connection, how: str, action: str) -> None:
        if how == "close-received":
            conn.receive_data(peer_frame(conn, Opcode.CLOSE, b""))
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
        assert sent_frames(conn) == [(Opcode.CLOSE, close_body(1001, b"away"))]
        assert conn.close_sent == (1001, "away")
        assert conn.state is State.CLOSING

    def test_send_close_after_close_received_sends_nothing(self, conn: Connection) -> None:
        conn.receive_data(peer_frame(conn, Opcode.CLOSE, close_body(1000)))
        conn.data_to_send()
        conn.send_close(1001)
        assert conn.data_to_send() == b""

    def test_server_initiated_close_then_peers_close(self) -> None:
        conn = server_after_handshake()
        conn.send_close(1000, "bye")
        assert conn.data_to_send() == b"\x88\x05\x03\xe8bye"
        assert flags(conn) == (State.CLOSING, False, True)
        assert conn.receive_data(encode_frame(Opcode.CLOSE, close_body(1000), mask=True)) == [CloseReceived(1000, "")]
        assert conn.data_to_send() == b""  # no second close frame
        # Nothing more to wait for: the server closes TCP now.
        assert flags(conn) == (State.CLOSED, True, False)
        assert conn.close_sent == (1000, "bye") and conn.close_rcvd == (1000, "")

    def test_client_initiated_close_then_servers_close_then_eof(self) -> None:
        conn = client_after_handshake()
        conn.send_close(4000, "done")
        assert sent_frames(conn) == [(Opcode.CLOSE, close_body(4000, b"done"))]
        assert conn.receive_data(encode_frame(Opcode.CLOSE, close_body(4000))) == [CloseReceived(4000, "")]
        assert conn.data_to_send() == b""
        assert flags(conn) == (State.CLOSED, False, True)  # waiting for the server's TCP close
        assert conn.receive_eof() == []
        assert flags(conn) == (State.CLOSED, True, False)

    def test_peer_answers_with_another_code(self, conn: Connection) -> None:
        conn.send_close(1000)
        conn.data_to_send()
        assert conn.receive_data(peer_frame(conn, Opcode.CLOSE, close_body(1001))) == [CloseReceived(1001, "")]
        assert conn.close_code == 1001

    def test_messages_still_delivered_while_closing(self, conn: Connection) -> None:
        conn.send_close()
        conn.data_to_send()
        data = peer_frame(conn, Opcode.TEXT, b"in flight") + peer_frame(conn, Opcode.CLOSE, close_body(1000))
        assert conn.receive_data(data) == [TextMessage("in flight"), CloseReceived(1000, "")]
        assert conn.data_to_send() == b""

    def test_violation_while_closing_sends_no_second_close(self, conn: Connection) -> None:
        conn.send_close()
        conn.data_to_send()
        events = conn.receive_data(peer_frame(conn, Opcode.CLOSE, close_body(999)))
        assert events == [Failed(1002, events[0].reason)]  # type: ignore[union-attr]
        assert conn.data_to_send() == b""
        assert conn.state is State.CLOSED and conn.close_transport

    def test_send_close_without_code(self, conn: Connection) -> None:
        conn.send_close(None)
        assert sent_frames(conn) == [(Opcode.CLOSE, b"")]
        assert conn.close_sent == (1005, "")

    @pytest.mark.parametrize(("code", "reason"), [(1005, ""), (1006, ""), (999, ""), (None, "why")])
    def test_send_close_misuse(self, conn: Connection, code: int | None, reason: str) -> None:
        if code == 1005:
            conn.send_close(code, reason)  # 1005 means "no code": an empty close
            assert sent_frames(conn) == [(Opcode.CLOSE, b"")]
            return
        with pytest.raises(ValueError):
            conn.send_close(code, reason)
        assert conn.state is State.OPEN
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("method", ["send_close", "fail"])
    def test_long_reason_is_truncated_on_a_character_boundary(self, conn: Connection, method: str) -> None:
        getattr(conn, method)(1000 if method == "send_close" else 1008, "é" * 100)
        ((opcode, payload),) = sent_frames(conn)
        assert opcode == Opcode.CLOSE
        assert len(payload) == 124  # 2 + 61 two-byte characters: 123 would split one
        assert payload[2:].decode() == "é" * 61

    def test_fail_by_owner(self, conn: Connection) -> None:
        conn.fail(1008, "policy")
        assert sent_frames(conn) == [(Opcode.CLOSE, close_body(1008, b"policy"))]
        assert conn.state is State.CLOSED and conn.close_transport and not conn.close_expected
        assert conn.close_code == 1008
        assert conn.receive_data(peer_frame(conn, Opcode.TEXT, b"x")) == []

    def test_eof_without_close_is_1006(self, conn: Connection) -> None:
        conn.receive_data(peer_frame(conn, Opcode.TEXT, b"partial")[:4])
        assert conn.receive_eof() == []
        assert conn.state is State.CLOSED and conn.close_transport
        assert conn.close_code == CloseCode.ABNORMAL
        assert conn.receive_data(peer_frame(conn, Opcode.TEXT, b"x")) == []
        assert conn.data_to_send() == b""

    def test_close_before_handshake_is_misuse(self, side: Side) -> None:
        with pytest.raises(InvalidState):
            Connection(side).send_close()


Step = Callable[[Connection], object]


def peer_closes(body: bytes) -> Step:
    return lambda conn: conn.receive_data(peer_frame(conn, Opcode.CLOSE, body))


def we_close(code: int, reason: str = "") -> Step:
    return lambda conn: conn.send_close(code, reason)


def eof(conn: Connection) -> object:
    return conn.receive_eof()


#: How a connection ends (steps) -> (whether the peer started the close, the code an application sees). The drain
#: case is what the code alone cannot tell: we close with 1001, the peer (aiohttp's client) echoes 1000.
CLOSE_INITIATORS: dict[str, tuple[tuple[Step, ...], bool, int]] = {
    "peer-closes-1000": ((peer_closes(close_body(1000, b"bye")),), True, 1000),
    "peer-closes-empty": ((peer_closes(b""),), True, 1005),
    "peer-closes-then-eof": ((peer_closes(close_body(1001)), eof), True, 1001),
    "peer-closes-then-we-close": ((peer_closes(close_body(1000)), we_close(1001)), True, 1000),
    "we-close-peer-echoes-1000": ((we_close(1001, "drain"), peer_closes(close_body(1000))), False, 1000),
    "we-close-then-eof": ((we_close(1000), eof), False, 1006),
    "we-fail": ((lambda conn: conn.fail(1008, "policy"),), False, 1008),
    "peer-violation": ((lambda conn: conn.receive_data(peer_frame(conn, 3, b"")),), False, 1002),
    "peer-invalid-close-code": ((peer_closes(close_body(999)),), False, 1002),
    "eof": ((eof,), False, 1006),
}


class TestCloseInitiator:
    """Who started the closing handshake: the peer (its close frame came while we were OPEN), or not (we did, a
    failure, or the TCP connection ended), on both sides, on the connection and on its ConnectionClosed."""

    @pytest.mark.parametrize("how", CLOSE_INITIATORS)
    def test_table(self, conn: Connection, how: str) -> None:
        steps, by_peer, code = CLOSE_INITIATORS[how]
        assert not conn.peer_started_close
        for step in steps:
            step(conn)
        conn.data_to_send()
        assert conn.peer_started_close is by_peer
        closed = conn.close_exc
        assert (closed.by_peer, closed.code) == (by_peer, code)

    def test_default_is_not_by_peer(self) -> None:
        assert ConnectionClosed(1000).by_peer is False


class TestFailing:
    """A violation ends parsing at once; the close frame goes out with the next data_to_send(), after whatever
    the owner sent in answer to the events that came before the bad frame."""

    def test_answers_to_earlier_events_go_out_before_the_close(self, conn: Connection) -> None:
        data = (
            peer_frame(conn, Opcode.PING, b"p") + peer_frame(conn, Opcode.TEXT, b"echo me") + peer_frame(conn, 3, b"")
        )
        events = conn.receive_data(data)
        assert events[:2] == [PingReceived(b"p"), TextMessage("echo me")]
        assert isinstance(events[2], Failed) and events[2].code == 1002
        conn.send_text("echo me")  # the owner answers the message that preceded the bad frame
        out = sent_frames(conn)
        assert out[:2] == [(Opcode.PONG, b"p"), (Opcode.TEXT, b"echo me")]
        assert out[2] == (Opcode.CLOSE, close_body(1002, events[2].reason.encode()))
        assert len(out) == 3
        assert flags(conn) == (State.CLOSED, True, False)
        assert conn.close_code == 1002

    def test_nothing_parsed_after_the_violation(self, conn: Connection) -> None:
        events = conn.receive_data(peer_frame(conn, 3, b"") + peer_frame(conn, Opcode.TEXT, b"same chunk"))
        assert len(events) == 1 and isinstance(events[0], Failed)
        assert conn.receive_data(peer_frame(conn, Opcode.TEXT, b"next chunk")) == []
        assert [op for op, _ in sent_frames(conn)] == [Opcode.CLOSE]

    def test_eof_before_the_close_is_flushed(self, conn: Connection) -> None:
        conn.receive_data(peer_frame(conn, 3, b""))
        conn.receive_eof()
        assert conn.data_to_send() == b""  # the peer is gone: no close frame to send
        assert flags(conn) == (State.CLOSED, True, False)

"""The client's opening handshake (RFC 6455 4.1) through the sans-I/O Connection: the request it sends, and every
check of the server's response. The server's side (4.2) is in test_handshake_server.py.
"""

from __future__ import annotations

import base64
import secrets

import pytest

from signaling.ws.connection import Connection, Side, State
from signaling.ws.events import HandshakeComplete, HandshakeFailed, PingReceived, TextMessage
from signaling.ws.exceptions import InvalidHandshake, InvalidState, InvalidStatus
from signaling.ws.frames import Opcode, encode_frame
from signaling.ws.handshake import ClientHandshake, accept_key

from .helpers import RFC_ACCEPT, RFC_KEY, feed, receive_request, request_head, response_101, sent_frames


def new_client(**kwargs: object) -> tuple[Connection, ClientHandshake]:
    conn = Connection(Side.CLIENT)
    handshake = ClientHandshake("server.example.com", "/chat", **kwargs)  # type: ignore[arg-type]
    conn.send_request(handshake)
    return conn, handshake


class TestClientRequest:
    def test_exact_request_with_patched_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(secrets, "token_bytes", lambda n: b"the sample nonce"[:n])
        conn, handshake = new_client()
        assert handshake.key == RFC_KEY
        assert conn.data_to_send() == request_head(
            headers=[
                ("Host", "server.example.com"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", RFC_KEY),
                ("Sec-WebSocket-Version", "13"),
            ]
        )

    def test_optional_headers(self) -> None:
        conn, _ = new_client(
            subprotocols=["v2", "v1"], origin="http://o", extra_headers=[("Authorization", "Bearer t")]
        )
        out = conn.data_to_send()
        assert out.endswith(
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v2, v1\r\nOrigin: http://o\r\n"
            b"Authorization: Bearer t\r\n\r\n"
        )

    def test_fresh_key_each_time(self) -> None:
        keys = {ClientHandshake("a").key for _ in range(8)}
        assert len(keys) == 8
        for key in keys:
            assert len(base64.b64decode(key, validate=True)) == 16

    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({"host": "a\r\nX-Evil: 1"}, id="host"),
            pytest.param({"target": "/chat HTTP/1.1\r\nX-Evil: 1\r\n"}, id="path"),
            pytest.param({"origin": "http://o\nX-Evil: 1"}, id="origin"),
            pytest.param({"extra_headers": [("Authorization", "Bearer t\r\nX-Evil: 1")]}, id="extra-value"),
            pytest.param({"extra_headers": [("X-A\r\nX-Evil", "1")]}, id="extra-name"),
            pytest.param({"subprotocols": ["chat\r\nX-Evil: 1"]}, id="subprotocol"),
        ],
    )
    def test_cr_or_lf_anywhere_is_refused_before_anything_is_sent(self, kwargs: dict[str, object]) -> None:
        """The request goes through Request.serialize, so the check that guards responses guards it too."""
        args: dict[str, object] = {"host": "server.example.com", "target": "/chat", **kwargs}
        with pytest.raises(ValueError, match="CR or LF"):
            ClientHandshake(**args)  # type: ignore[arg-type]

    def test_request_passes_server_checks(self) -> None:
        client, _ = new_client(subprotocols=["chat"])
        server = Connection(Side.SERVER)
        event = receive_request(server, client.data_to_send())
        server.accept(event.request, subprotocols=["chat"])
        events = client.receive_data(server.data_to_send())
        assert len(events) == 1 and isinstance(events[0], HandshakeComplete)
        assert events[0].subprotocol == "chat"
        assert client.subprotocol == "chat" and client.state is State.OPEN


def ok_101(handshake: ClientHandshake, *extra: tuple[str, str]) -> bytes:
    return response_101(handshake.key, extra)


class TestClientChecksResponse:
    @pytest.mark.parametrize("step", [None, 1], ids=["whole", "bytewise"])
    def test_accepted(self, step: int | None) -> None:
        conn, handshake = new_client()
        conn.data_to_send()
        data = ok_101(handshake)
        if step == 1:
            for i in range(len(data) - 1):
                assert conn.receive_data(data[i : i + 1]) == []
            events = conn.receive_data(data[-1:])
        else:
            events = conn.receive_data(data)
        assert len(events) == 1 and isinstance(events[0], HandshakeComplete)
        assert events[0].subprotocol is None
        assert events[0].response.status == 101
        assert conn.state is State.OPEN
        assert conn.data_to_send() == b""

    def test_case_insensitive(self) -> None:
        conn, handshake = new_client()
        data = (
            b"HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n"
            b"sec-websocket-accept: " + accept_key(handshake.key).encode() + b"\r\n\r\n"
        )
        assert isinstance(conn.receive_data(data)[0], HandshakeComplete)

    @pytest.mark.parametrize("step", [None, 1], ids=["same-chunk", "bytewise"])
    def test_frames_right_after_101(self, step: int | None) -> None:
        conn, handshake = new_client()
        conn.data_to_send()
        data = ok_101(handshake) + encode_frame(Opcode.TEXT, b"hello") + encode_frame(Opcode.PING, b"p")
        events = feed(conn, data, step)
        assert isinstance(events[0], HandshakeComplete)
        assert events[1:] == [TextMessage("hello"), PingReceived(b"p")]
        assert sent_frames(conn) == [(Opcode.PONG, b"p")]

    def test_subprotocol_chosen(self) -> None:
        conn, handshake = new_client(subprotocols=["v1", "v2"])
        events = conn.receive_data(ok_101(handshake, ("Sec-WebSocket-Protocol", "v2")))
        assert isinstance(events[0], HandshakeComplete) and events[0].subprotocol == "v2"
        assert conn.subprotocol == "v2"

    @pytest.mark.parametrize(
        ("subprotocols", "response", "error"),
        [
            pytest.param((), b"HTTP/1.1 200 OK\r\nContent-Length: 0", InvalidStatus, id="status-200"),
            pytest.param((), b"HTTP/1.1 403 Forbidden", InvalidStatus, id="status-403"),
            pytest.param((), b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13", InvalidStatus, id="426"),
            pytest.param((), "wrong-accept", InvalidHandshake, id="wrong-accept"),
            pytest.param((), "no-accept", InvalidHandshake, id="missing-accept"),
            pytest.param((), "two-accepts", InvalidHandshake, id="two-accepts"),
            pytest.param((), "no-upgrade", InvalidHandshake, id="missing-upgrade"),
            pytest.param((), "upgrade-h2c", InvalidHandshake, id="upgrade-not-websocket"),
            pytest.param((), "no-connection", InvalidHandshake, id="missing-connection"),
            pytest.param((), "deflate", InvalidHandshake, id="extension-permessage-deflate"),
            pytest.param((), "other-ext", InvalidHandshake, id="extension-other"),
            pytest.param(("chat",), "proto-other", InvalidHandshake, id="unoffered-subprotocol"),
            pytest.param((), "proto-chat", InvalidHandshake, id="subprotocol-none-offered"),
            pytest.param(("chat", "v2"), "proto-two", InvalidHandshake, id="two-subprotocols"),
        ],
    )
    def test_failed(self, subprotocols: tuple[str, ...], response: bytes | str, error: type[InvalidHandshake]) -> None:
        """A status other than 101 is an InvalidStatus carrying it; a 101 that breaks 4.1 an InvalidHandshake."""
        conn, handshake = new_client(subprotocols=subprotocols)
        conn.data_to_send()
        good = accept_key(handshake.key)
        heads: dict[str, bytes] = {
            "wrong-accept": response_101(handshake.key, accept=RFC_ACCEPT),
            "no-accept": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "two-accepts": ok_101(handshake, ("Sec-WebSocket-Accept", good)),
            "no-upgrade": (
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + good.encode() + b"\r\n\r\n"
            ),
            "upgrade-h2c": (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + good.encode() + b"\r\n\r\n"
            ),
            "no-connection": (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Accept: " + good.encode() + b"\r\n\r\n"
            ),
            "deflate": ok_101(handshake, ("Sec-WebSocket-Extensions", "permessage-deflate")),
            "other-ext": ok_101(handshake, ("Sec-WebSocket-Extensions", "x-foo")),
            "proto-other": ok_101(handshake, ("Sec-WebSocket-Protocol", "other")),
            "proto-chat": ok_101(handshake, ("Sec-WebSocket-Protocol", "chat")),
            "proto-two": ok_101(handshake, ("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "v2")),
        }
        data = heads[response] if isinstance(response, str) else response + b"\r\n\r\n"
        events = conn.receive_data(data + encode_frame(Opcode.TEXT, b"ignored"))
        assert len(events) == 1 and isinstance(events[0], HandshakeFailed), events
        failure = events[0].error
        assert type(failure) is error
        assert failure.response is not None and failure.response.status == int(data[9:12])
        if isinstance(failure, InvalidStatus):
            assert failure.status == failure.response.status
        self.assert_ended(conn)

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            pytest.param(b"HTTP/1.1 101\r\nbad\r\n\r\n", "header line without a colon", id="malformed-header"),
            pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "malformed status line", id="not-http"),
            pytest.param(b"HTTP/1.1 101 x\r\nX: " + b"a" * 9000, "head too large", id="head-too-big"),
        ],
    )
    def test_malformed_response(self, data: bytes, reason: str) -> None:
        """Not an HTTP response: an InvalidHandshake without one (the parser's HTTP status is for servers)."""
        conn, _ = new_client()
        conn.data_to_send()
        events = conn.receive_data(data)
        assert len(events) == 1 and isinstance(events[0], HandshakeFailed), events
        failure = events[0].error
        assert type(failure) is InvalidHandshake
        assert reason in str(failure)
        assert failure.response is None
        self.assert_ended(conn)

    @staticmethod
    def assert_ended(conn: Connection) -> None:
        assert conn.state is State.CLOSED
        assert conn.close_transport
        assert conn.data_to_send() == b""
        assert conn.receive_data(encode_frame(Opcode.TEXT, b"later")) == []
        with pytest.raises(InvalidState):
            conn.send_text("x")


class TestClientMisuse:
    def test_receive_before_send_request(self) -> None:
        with pytest.raises(InvalidState):
            Connection(Side.CLIENT).receive_data(b"HTTP/1.1 101 x\r\n\r\n")

    def test_send_request_twice(self) -> None:
        conn, _ = new_client()
        with pytest.raises(InvalidState):
            conn.send_request(ClientHandshake("a"))

    def test_accept_on_client(self) -> None:
        conn, _ = new_client()
        request = receive_request(Connection(Side.SERVER), request_head()).request
        with pytest.raises(InvalidState):
            conn.accept(request)

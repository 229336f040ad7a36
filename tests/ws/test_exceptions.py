"""exceptions.py: the close code and reason each protocol error carries (RFC 6455 7.4.1), and the handshake and
closed-connection errors."""

from __future__ import annotations

import pytest

from signaling.ws.exceptions import (
    ConnectionClosed,
    HandshakeError,
    InvalidUtf8,
    MessageTooBig,
    ProtocolError,
    UnsupportedData,
    WebSocketError,
)


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

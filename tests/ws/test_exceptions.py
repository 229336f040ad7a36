"""exceptions.py: the close code and reason each protocol error carries (RFC 6455 7.4.1), and the handshake and
closed-connection errors."""

from __future__ import annotations

import pytest

from signaling.ws.exceptions import (
    ConnectionClosed,
    HandshakeError,
    InvalidHandshake,
    InvalidStatus,
    InvalidUtf8,
    MessageTooBig,
    ProtocolError,
    UnsupportedData,
    WebSocketError,
)
from signaling.ws.http11 import Headers, Response


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

    def test_invalid_handshake(self) -> None:
        response = Response(101)
        exc = InvalidHandshake("wrong Sec-WebSocket-Accept", response)
        assert (exc.reason, exc.response) == ("wrong Sec-WebSocket-Accept", response)
        assert str(exc) == "wrong Sec-WebSocket-Accept"
        assert isinstance(exc, WebSocketError) and not isinstance(exc, HandshakeError)
        assert InvalidHandshake("not HTTP").response is None

    def test_invalid_status_carries_the_response(self) -> None:
        """A refusal's status and headers (Retry-After...) reach the caller."""
        response = Response(429, Headers([("Retry-After", "5")]), b"slow down\n")
        exc = InvalidStatus(response)
        assert isinstance(exc, InvalidHandshake)
        assert (exc.status, exc.response) == (429, response)
        assert exc.response.headers.get("Retry-After") == "5"
        assert str(exc) == "server rejected the WebSocket connection: HTTP 429"

    def test_connection_closed(self) -> None:
        exc = ConnectionClosed(1000, "bye", sent_code=1000)
        assert (exc.code, exc.reason, exc.sent_code) == (1000, "bye", 1000)
        assert str(ConnectionClosed(1006)) == "connection closed: 1006"

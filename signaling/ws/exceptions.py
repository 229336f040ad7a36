"""Typed errors of the WebSocket core.

Every error the peer can cause carries the close code (or HTTP status) it maps to, so the one place that fails
a connection never has to guess from a message string.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConnectionClosed",
    "HandshakeError",
    "InvalidState",
    "InvalidUtf8",
    "MessageTooBig",
    "ProtocolError",
    "UnsupportedData",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Base class of every error raised by signaling.ws."""


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455 framing rules: fail the connection with ``close_code``."""

    close_code = 1002

    def __init__(self, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if close_code is not None:
            self.close_code = close_code


class InvalidUtf8(ProtocolError):
    """A text message or close reason is not UTF-8 (RFC 6455 8.1)."""

    close_code = 1007


class MessageTooBig(ProtocolError):
    """A message is larger than the configured limit, known from its length header."""

    close_code = 1009


class UnsupportedData(ProtocolError):
    """The endpoint cannot accept this kind of data (for instance binary where only text is spoken)."""

    close_code = 1003


class HandshakeError(WebSocketError):
    """The opening handshake failed; a server answers with ``status`` and these headers, then closes."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = list(headers)


class InvalidState(WebSocketError):
    """Local misuse: an operation that the connection's state does not allow (sending after close...)."""


class ConnectionClosed(WebSocketError):
    """The connection is closed; ``code``/``reason`` are what the peer sent (1006 when nothing was)."""

    def __init__(self, code: int, reason: str = "", *, sent_code: int | None = None) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.sent_code = sent_code

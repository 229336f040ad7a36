"""Typed errors of the WebSocket core.

Every error the peer can cause carries the close code (or HTTP status) it maps to, so the one place that fails
a connection never has to guess from a message string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .http11 import Response

__all__ = [
    "ConnectionClosed",
    "HandshakeError",
    "InvalidHandshake",
    "InvalidState",
    "InvalidStatus",
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
    """Server side: the opening handshake failed; the server answers with ``status`` and these headers, then
    closes."""

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


class InvalidHandshake(WebSocketError):
    """Client side: the server's answer is not a valid WebSocket accept (RFC 6455 4.1: the client fails the
    connection): a wrong Sec-WebSocket-Accept, no Upgrade or Connection, an extension or subprotocol that was not
    offered, or no HTTP response at all (``response`` is None then)."""

    def __init__(self, reason: str, response: Response | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.response = response


class InvalidStatus(InvalidHandshake):
    """Client side: the server answered with ``status``, not 101; its ``response`` (headers such as Retry-After,
    the body) says why."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"server rejected the WebSocket connection: HTTP {response.status}", response)
        self.status = response.status
        self.response: Response = response


class InvalidState(WebSocketError):
    """Local misuse: an operation that the connection's state does not allow (sending after close...)."""


class ConnectionClosed(WebSocketError):
    """The connection is closed; ``code``/``reason`` are what the peer sent (1006 when nothing was).

    ``by_peer``: the peer started the closing handshake (False when we did, on a failure, or at EOF); ``sent_code``:
    the code of our close frame, if we sent one.
    """

    def __init__(self, code: int, reason: str = "", *, sent_code: int | None = None, by_peer: bool = False) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.sent_code = sent_code
        self.by_peer = by_peer

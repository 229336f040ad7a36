"""What the sans-I/O connection reports to its owner after ``receive_data``.

Small slotted classes compared with ``==`` in tests; one per thing the owner acts on.
"""

from __future__ import annotations

from dataclasses import dataclass

from .exceptions import HandshakeError, InvalidHandshake
from .http11 import Request, Response

__all__ = [
    "BadRequest",
    "BinaryMessage",
    "CloseReceived",
    "Event",
    "Failed",
    "HandshakeComplete",
    "HandshakeFailed",
    "PingReceived",
    "PongReceived",
    "RequestReceived",
    "TextMessage",
]


@dataclass(slots=True)
class RequestReceived:
    """Server side: a complete request head. The owner answers with accept(), reject() or send_response()."""

    request: Request


@dataclass(slots=True)
class BadRequest:
    """Server side: a malformed request head; an HTTP error response is queued and the connection ends."""

    error: HandshakeError


@dataclass(slots=True)
class HandshakeComplete:
    """Client side: the server's 101 passed every check."""

    response: Response
    subprotocol: str | None


@dataclass(slots=True)
class HandshakeFailed:
    """Client side: the server refused (InvalidStatus) or answered wrongly (InvalidHandshake); the connection ends."""

    error: InvalidHandshake


@dataclass(slots=True)
class TextMessage:
    data: str


@dataclass(slots=True)
class BinaryMessage:
    data: bytes


@dataclass(slots=True)
class PingReceived:
    """A ping arrived; its pong is already queued."""

    data: bytes


@dataclass(slots=True)
class PongReceived:
    data: bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer's close frame (code 1005 when it had no body). Our answer, if due, is already queued."""

    code: int
    reason: str


@dataclass(slots=True)
class Failed:
    """We failed the connection (RFC 6455 7.1.7) for a peer's violation: it is CLOSED and nothing more is parsed.

    Our close frame goes out with the next ``data_to_send()``, after the owner's answers to the events before
    this one (sends stay allowed until then)."""

    code: int
    reason: str


Event = (
    RequestReceived
    | BadRequest
    | HandshakeComplete
    | HandshakeFailed
    | TextMessage
    | BinaryMessage
    | PingReceived
    | PongReceived
    | CloseReceived
    | Failed
)

"""What the sans-I/O connection reports to its owner after ``receive_data``.

Small frozen slotted dataclasses, compared with ``==`` in tests; one per thing the owner acts on. Immutable, so
what the core reported cannot change on its way through the owner. The two made once per received message on the
relay's hot path set their field through the slot's own descriptor: a frozen dataclass's ``__init__`` goes
through ``object.__setattr__``, ~90 ns more per message, where this costs ~35 ns more than a mutable one.
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


@dataclass(slots=True, frozen=True)
class RequestReceived:
    """Server side: a complete request head. The owner answers with accept(), reject() or send_response()."""

    request: Request


@dataclass(slots=True, frozen=True)
class BadRequest:
    """Server side: a malformed request head; an HTTP error response is queued and the connection ends."""

    error: HandshakeError


@dataclass(slots=True, frozen=True)
class HandshakeComplete:
    """Client side: the server's 101 passed every check."""

    response: Response
    subprotocol: str | None


@dataclass(slots=True, frozen=True)
class HandshakeFailed:
    """Client side: the server refused (InvalidStatus) or answered wrongly (InvalidHandshake); the connection ends."""

    error: InvalidHandshake


@dataclass(slots=True, frozen=True, init=False)
class TextMessage:
    data: str

    def __init__(self, data: str) -> None:
        _set_text(self, data)


@dataclass(slots=True, frozen=True, init=False)
class BinaryMessage:
    data: bytes

    def __init__(self, data: bytes) -> None:
        _set_binary(self, data)


# The slots' descriptors of the classes @dataclass(slots=True) made: they set a field past the frozen __setattr__.
_set_text = TextMessage.__dict__["data"].__set__
_set_binary = BinaryMessage.__dict__["data"].__set__


@dataclass(slots=True, frozen=True)
class PingReceived:
    """A ping arrived; its pong is already queued."""

    data: bytes


@dataclass(slots=True, frozen=True)
class PongReceived:
    data: bytes


@dataclass(slots=True, frozen=True)
class CloseReceived:
    """The peer's close frame (code 1005 when it had no body). Our answer, if due, is already queued."""

    code: int
    reason: str


@dataclass(slots=True, frozen=True)
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

"""RFC 6455 WebSocket transport: a sans-I/O core (frames, handshake, connection), an asyncio adapter (aio/).

Nothing here knows about rooms or signaling messages.
"""

from .connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Side, State
from .exceptions import (
    ConnectionClosed,
    HandshakeError,
    InvalidHandshake,
    InvalidState,
    InvalidStatus,
    InvalidUtf8,
    MessageTooBig,
    ProtocolError,
    UnsupportedData,
    WebSocketError,
)
from .frames import CloseCode, Opcode

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "CloseCode",
    "Connection",
    "ConnectionClosed",
    "HandshakeError",
    "InvalidHandshake",
    "InvalidState",
    "InvalidStatus",
    "InvalidUtf8",
    "MessageTooBig",
    "Opcode",
    "ProtocolError",
    "Side",
    "State",
    "UnsupportedData",
    "WebSocketError",
]

"""The wire contract of the signaling protocol: message models, error codes, parsing, serializing, JSON Schema.

Pure data and functions: nothing here knows about sockets, rooms or the transport. Clients import the message
models from here (``from signaling.protocol import PeerJoined``).
"""

from .errors import ErrorCode, Ref, SignalingError
from .models import (
    CLIENT_MESSAGE_TYPES,
    SERVER_MESSAGE_TYPES,
    Answer,
    Candidate,
    ClientMessage,
    ErrorMessage,
    IceCandidate,
    IceServer,
    Join,
    Leave,
    Message,
    Offer,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    RelayedAnswer,
    RelayedCandidate,
    RelayedMessage,
    RelayedOffer,
    ServerMessage,
    Welcome,
)
from .parse import parse_client_message, parse_server_message

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "SERVER_MESSAGE_TYPES",
    "Answer",
    "Candidate",
    "ClientMessage",
    "ErrorCode",
    "ErrorMessage",
    "IceCandidate",
    "IceServer",
    "Join",
    "Leave",
    "Message",
    "Offer",
    "PeerInfo",
    "PeerJoined",
    "PeerLeft",
    "Ping",
    "Pong",
    "Ref",
    "RelayedAnswer",
    "RelayedCandidate",
    "RelayedMessage",
    "RelayedOffer",
    "ServerMessage",
    "SignalingError",
    "Welcome",
    "parse_client_message",
    "parse_server_message",
]

"""Who is in a room, as every part of the domain sees it: members, their connections (sinks), their ids.

A connection is a ``PeerSink``: the domain hands it texts and, when the session moved to another connection,
tells it to close; it knows nothing else of the transport. A room's members, as the relay looks them up at every
message, are a ``LiveMembers`` mapping.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

__all__ = [
    "FOREIGN_MARK",
    "LiveMembers",
    "Logger",
    "Member",
    "PeerSink",
    "foreign",
    "new_peer_id",
    "new_resume_token",
    "token_digest",
]

#: What the rooms and peer ids of other protocols (signaling/interop/) contain, and native ones never do (room
#: names follow ROOM_PATTERN, peer ids are URL-safe base64): a native client cannot join such a room or be
#: mistaken for such a peer, and their members are never told anything in the native protocol's words.
FOREIGN_MARK: Final = "."
_PEER_ID_BYTES: Final = 12  # 96 random bits -> 16 URL-safe characters
_RESUME_TOKEN_BYTES: Final = 24  # 192 random bits


class PeerSink(Protocol):
    """One peer's connection as the domain sees it."""

    def deliver(self, text: str) -> None:
        """Take one server->client JSON text for this peer without blocking.

        May close its connection (a slow consumer, say) and so re-enter the domain; should not raise.
        """

    def taken_over(self) -> None:
        """The session was resumed on another connection: close this one (4001) without leaving the room."""

    def removed(self) -> None:
        """The application's backend removed the peer, which has already left its room: close (4003)."""


class Logger(Protocol):
    """The part of a structlog bound logger that the domain uses."""

    def bind(self, **new_values: Any) -> Logger: ...
    def debug(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def info(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def warning(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def error(self, event: str, *args: Any, **kw: Any) -> Any: ...


@dataclass(slots=True, eq=False)
class Member:
    """A peer in a room. ``node`` is the server process its connection is on ("" in a grace period); messages to a
    ``resumable`` peer are numbered (``seq``) and kept, so that a session resumed after a drop can be replayed
    what it missed. ``welcome`` lists it and ``peer-joined`` announces it as it is (protocol.encode.Listed)."""

    peer: str
    room: str
    name: str | None
    meta: Mapping[str, Any] | None
    node: str
    resumable: bool


#: The members of a room by peer id, in join order, as this process knows them: a live view that the directory
#: keeps current, not a copy. Sessions hold it for their room and read it at every message; whoever hands texts
#: to the members while iterating it copies it first (a delivery may close a connection, and so change it).
LiveMembers = Mapping[str, Member]


def foreign(room: str) -> bool:
    """Whether ``room`` belongs to another protocol (``FOREIGN_MARK``): its departures are not announced."""
    return FOREIGN_MARK in room


def new_peer_id() -> str:
    """An unguessable, URL-safe peer id (96 random bits); safe to splice into JSON without escaping."""
    return secrets.token_urlsafe(_PEER_ID_BYTES)


def new_resume_token() -> str:
    """A resume token: 192 random bits, URL-safe. Only its digest is stored."""
    return secrets.token_urlsafe(_RESUME_TOKEN_BYTES)


def token_digest(token: str) -> str:
    """What the server stores of a resume token: a leaked store gives no usable token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

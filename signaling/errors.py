"""Domain errors: a client mistake answered with an ``error`` message while the connection stays open.

Transport failures (bad frames, invalid UTF-8, oversized messages) live in ``signaling.ws.errors`` and close
the connection instead; keeping the two apart means a schema error can never turn into a close code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

__all__ = ["ErrorCode", "ErrorCodeName", "Ref", "SignalingError"]


class ErrorCode(StrEnum):
    """The `code` of an `error` message; see docs/protocol.md, "Errors"."""

    BAD_JSON = "bad-json"
    INVALID_MESSAGE = "invalid-message"
    UNKNOWN_TYPE = "unknown-type"
    NOT_JOINED = "not-joined"
    ALREADY_JOINED = "already-joined"
    ROOM_FULL = "room-full"
    UNKNOWN_PEER = "unknown-peer"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate-limited"


# The same codes as a Literal: SignalingError("room-full", ...) still gets a type check.
ErrorCodeName = Literal[
    "bad-json",
    "invalid-message",
    "unknown-type",
    "not-joined",
    "already-joined",
    "room-full",
    "unknown-peer",
    "unauthorized",
    "rate-limited",
]

# The client's ``id`` echoed back: a string of at most 64 characters or an integer.
Ref = str | int


class SignalingError(Exception):
    """A client mistake that becomes one ``error`` message; never closes the connection.

    Args:
        code: one of the contract's error codes.
        message: a human-readable sentence that tells the client what to change.
        ref: the ``id`` of the message that caused it, echoed back as ``ref``; None when it had none.
    """

    __slots__ = ("code", "message", "ref")

    def __init__(self, code: ErrorCode | ErrorCodeName, message: str, ref: Ref | None = None) -> None:
        super().__init__(code, message, ref)
        self.code: ErrorCode = ErrorCode(code)
        self.message: str = message
        self.ref: Ref | None = ref

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def __repr__(self) -> str:
        return f"SignalingError({self.code.value!r}, {self.message!r}, ref={self.ref!r})"

"""The contract's `error` replies: a client mistake answered with an ``error`` message, the connection staying open.

Transport failures (bad frames, invalid UTF-8, oversized messages) live in ``signaling.ws.exceptions`` and close
the connection instead; keeping the two apart means a schema error can never turn into a close code.
"""

from __future__ import annotations

from enum import StrEnum

from .facts import MAX_ID_LENGTH

__all__ = ["ErrorCode", "Ref", "SignalingError", "shorten", "valid_ref"]


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
    UNAVAILABLE = "unavailable"


# The client's ``id`` echoed back: a string of at most MAX_ID_LENGTH characters or an integer.
Ref = str | int


def valid_ref(value: object) -> Ref | None:
    """``value`` if it may be echoed as ``ref`` (a short string or an integer, not a bool), else None."""
    if isinstance(value, str):
        return value if len(value) <= MAX_ID_LENGTH else None
    if type(value) is int:
        return value
    return None


def shorten(text: str, limit: int = 64) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for quoting client input inside error messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SignalingError(Exception):
    """A client mistake that becomes one ``error`` message; never closes the connection.

    Args:
        code: one of the contract's error codes.
        message: a human-readable sentence that tells the client what to change.
        ref: the ``id`` of the message that caused it, echoed back as ``ref``; None when it had none.
    """

    __slots__ = ("code", "message", "ref")

    def __init__(self, code: ErrorCode, message: str, ref: Ref | None = None) -> None:
        super().__init__(code, message, ref)
        self.code: ErrorCode = ErrorCode(code)
        self.message: str = message
        self.ref: Ref | None = ref

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def __repr__(self) -> str:
        return f"SignalingError({self.code.value!r}, {self.message!r}, ref={self.ref!r})"

"""Parsing messages: client texts into validated models (or the contract's error), server texts for clients.

The happy path is one ``validate_json`` call; only when it fails does :func:`parse_client_message` look closer,
to pick the contract's error code and to recover the ``id`` for ``ref``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pydantic_core
from pydantic import ValidationError

from .errors import ErrorCode, Ref, SignalingError, shorten, valid_ref
from .facts import MAX_ID_LENGTH
from .models import CLIENT_ADAPTER, CLIENT_MESSAGE_TYPES, SERVER_ADAPTER, ClientMessage, ServerMessage

__all__ = ["non_finite_error", "parse_client_message", "parse_server_message"]


def parse_server_message(text: str | bytes) -> ServerMessage:
    """Validate one server message (for clients and tests); raises pydantic's ValidationError."""
    return SERVER_ADAPTER.validate_json(text)


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Validate one client message from its frame text.

    Raises:
        SignalingError: ``bad-json``, ``invalid-message`` (the message names the field path) or
            ``unknown-type``; ``ref`` is the message's ``id`` whenever that id is itself valid.
    """
    try:
        return CLIENT_ADAPTER.validate_json(text)
    except ValidationError as exc:
        raise _classify(exc, text) from None
    except TypeError:
        # Some pydantic versions refuse a str holding a lone surrogate this way. The transport's strict UTF-8
        # decoding never produces one, but this function must hold for any str.
        if isinstance(text, str):
            raise _bad_json(_SURROGATE) from None
        raise


_SURROGATE: Final = "it holds a lone surrogate, which UTF-8 cannot encode"


def _parse_strict(text: str | bytes) -> Any:
    """Re-parse on the error path only, rejecting NaN/Infinity, which validate_json lets through."""
    return pydantic_core.from_json(text, allow_inf_nan=False)


def _bad_json(detail: str) -> SignalingError:
    return SignalingError(ErrorCode.BAD_JSON, f"the text is not valid JSON: {detail}")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def _classify(exc: ValidationError, text: str | bytes) -> SignalingError:
    """Turn the failed validation into the contract's error; cold path, so clarity over speed."""
    errors = exc.errors(include_url=False)
    if errors[0]["type"] == "json_invalid":
        detail = str((errors[0].get("ctx") or {}).get("error", "unparsable"))
        return _bad_json(detail)
    if errors[0]["type"] == "string_unicode":  # a str holding a lone surrogate
        return _bad_json(_SURROGATE)
    try:
        obj = _parse_strict(text)
    except ValueError as parse_exc:
        return _bad_json(str(parse_exc))
    if not isinstance(obj, dict):
        return SignalingError(ErrorCode.INVALID_MESSAGE, f"a message must be a JSON object, got {_json_kind(obj)}")
    ref = valid_ref(obj.get("id"))
    if "type" not in obj:
        return SignalingError(ErrorCode.INVALID_MESSAGE, 'type: Field required (e.g. "join")', ref)
    tag = obj["type"]
    if not isinstance(tag, str):
        return SignalingError(
            ErrorCode.INVALID_MESSAGE, f"type: Input should be a valid string, got {_json_kind(tag)}", ref
        )
    if tag not in CLIENT_MESSAGE_TYPES:
        return SignalingError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {shorten(tag)!r}; known types: {', '.join(CLIENT_MESSAGE_TYPES)}",
            ref,
        )
    return SignalingError(ErrorCode.INVALID_MESSAGE, _describe(errors), ref)


def _describe(errors: Sequence[pydantic_core.ErrorDetails], limit: int = 3) -> str:
    """Name the field path (tag dropped) before pydantic's message: "room: String should match ..."."""
    parts: list[str] = []
    for error in errors:
        loc = error["loc"][1:]  # loc[0] is the union tag, e.g. "join"
        if loc and loc[0] == "id":
            # id is a str|int union; pydantic reports one error per branch, which reads badly.
            part = f"id: must be a string of at most {MAX_ID_LENGTH} characters or an integer"
        else:
            path = ".".join(str(p) for p in loc)
            part = f"{path}: {error['msg']}" if path else error["msg"]
        if part not in parts:
            parts.append(part)
    shown = "; ".join(parts[:limit])
    if len(parts) > limit:
        shown += f" (and {len(parts) - limit} more)"
    return shown


def non_finite_error(text: str | bytes, field: str, ref: Ref | None) -> SignalingError:
    """The error for a payload holding NaN/Infinity: ``bad-json`` if the text spelled them, else overflow.

    JSON has no NaN or Infinity, so the tokens make the text invalid (``bad-json``); a literal like 1e400 is
    valid JSON that no double can hold, which makes the field invalid instead.
    """
    try:
        _parse_strict(text)
    except ValueError as exc:
        return _bad_json(str(exc))
    return SignalingError(ErrorCode.INVALID_MESSAGE, f"{field}: numbers must fit in a double", ref)

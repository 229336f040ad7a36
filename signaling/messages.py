"""Protocol v1 messages: pydantic models (validation and JSON Schema) plus fast serializers.

Client messages are validated straight from the frame text with one ``validate_json`` call on a union
discriminated by ``type``; only when that fails does :func:`parse_client_message` look closer, to pick the
contract's error code and to recover the ``id`` for ``ref``. Server messages have models too, for the schema
and for clients that parse them, but the server writes them with the ``*_json`` functions below: relays are
the hot path, and a template around an already-escaped payload beats building and dumping a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from json.encoder import encode_basestring as _quote
from typing import Annotated, Any, Final, Literal, NamedTuple, NotRequired, TypeAlias

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from signaling.errors import ErrorCode, Ref, SignalingError

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "MAX_ID_LENGTH",
    "MAX_META_BYTES",
    "MAX_NAME_LENGTH",
    "PONG_JSON",
    "ROOM_PATTERN",
    "SERVER_MESSAGE_TYPES",
    "Answer",
    "Candidate",
    "ClientMessage",
    "ErrorMessage",
    "IceCandidate",
    "IceServer",
    "Join",
    "Leave",
    "Message",
    "NonFiniteNumber",
    "Offer",
    "PeerEntry",
    "PeerInfo",
    "PeerJoined",
    "PeerLeft",
    "Ping",
    "Pong",
    "RelayedAnswer",
    "RelayedCandidate",
    "RelayedMessage",
    "RelayedOffer",
    "ServerMessage",
    "Welcome",
    "error_json",
    "ice_servers_json",
    "non_finite_error",
    "parse_client_message",
    "parse_server_message",
    "peer_joined_json",
    "peer_left_json",
    "protocol_json_schema",
    "relayed_answer_json",
    "relayed_candidate_json",
    "relayed_message_json",
    "relayed_offer_json",
    "welcome_json",
]

ROOM_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
MAX_ID_LENGTH: Final = 64
MAX_NAME_LENGTH: Final = 64
MAX_META_BYTES: Final = 1024
PROTOCOL_VERSION: Final = 1

# ----------------------------------------------------------------------------------------------------
# Shared field types


def _has_non_finite(value: Any) -> bool:
    """Walk a parsed JSON value; only reached when its serialization mentions NaN or Infinity."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def _dump_json_value(value: Any) -> str:
    """Serialize an arbitrary JSON value compactly; raise NonFiniteNumber for NaN/Infinity.

    The parser accepts the non-standard NaN/Infinity tokens and turns 1e400 into inf; relaying either would
    hand the receiver text that JSON.parse rejects. The substring test keeps the common case to one C-level
    scan.
    """
    out = pydantic_core.to_json(value)
    if (b"NaN" in out or b"Infinity" in out) and _has_non_finite(value):
        raise NonFiniteNumber
    return out.decode()


class NonFiniteNumber(ValueError):
    """A parsed value holds NaN or +-Infinity, which JSON cannot carry."""


def _check_meta(meta: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(_dump_json_value(meta).encode())
    except NonFiniteNumber:
        raise PydanticCustomError("non_finite_number", "numbers must be finite") from None
    if size > MAX_META_BYTES:
        raise PydanticCustomError(
            "meta_too_big",
            "must serialize to at most {max_bytes} bytes of compact JSON, got {size}",
            {"max_bytes": MAX_META_BYTES, "size": size},
        )
    return meta


MessageId = Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)] | int
RoomName = Annotated[str, StringConstraints(pattern=ROOM_PATTERN)]
PeerName = Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH)]
Meta = Annotated[dict[str, Any], AfterValidator(_check_meta)]
PeerId = Annotated[str, Field(description="A peer id made by the server (URL-safe).")]


# A TypedDict rather than a model: validated into a plain dict, it is relayed with one fast to_json call.
# Docstrings of the protocol types become descriptions in the JSON Schema, so they speak to client authors.
@with_config(ConfigDict(strict=True, extra="ignore"))
class IceCandidate(TypedDict):
    """An RTCIceCandidateInit, as RTCIceCandidate.toJSON() gives it; other fields are dropped."""

    candidate: str
    sdpMid: str | None
    sdpMLineIndex: int | None
    usernameFragment: NotRequired[str | None]


# ----------------------------------------------------------------------------------------------------
# Client -> server


class _ClientMessage(BaseModel):
    # Strict: a wire protocol should not turn "1" into 1 or 1.0 into 1. Unknown fields are ignored (contract).
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: MessageId | None = Field(
        default=None,
        description="Echoed back as `ref` in the `welcome` or `error` this message causes.",
    )


class Join(_ClientMessage):
    """Join a room; answered by `welcome`, and every other peer there gets `peer-joined`."""

    type: Literal["join"]
    room: RoomName
    name: PeerName | None = None
    meta: Meta | None = Field(default=None, description="A JSON object of at most 1 KiB serialized.")
    token: str | None = None
    resume: str | None = None


class Leave(_ClientMessage):
    """Leave the room; the others get `peer-left`, and the connection may `join` again."""

    type: Literal["leave"]


class Offer(_ClientMessage):
    """An SDP offer for one peer of the room."""

    type: Literal["offer"]
    to: PeerId
    sdp: str


class Answer(_ClientMessage):
    """An SDP answer for one peer of the room."""

    type: Literal["answer"]
    to: PeerId
    sdp: str


class Candidate(_ClientMessage):
    """A trickled ICE candidate for one peer of the room; `null` marks the end of candidates."""

    type: Literal["candidate"]
    to: PeerId
    candidate: IceCandidate | None


class Message(_ClientMessage):
    """Application data for one peer (`to`) or, without `to`, for every other peer of the room."""

    type: Literal["message"]
    to: PeerId | None = None
    data: Any = Field(description="Any JSON value.")


class Ping(_ClientMessage):
    """Answered by `pong`; lets a client check that the signaling path is alive."""

    type: Literal["ping"]


ClientMessage: TypeAlias = Annotated[
    Join | Leave | Offer | Answer | Candidate | Message | Ping, Field(discriminator="type")
]
_CLIENT_ADAPTER: Final[TypeAdapter[ClientMessage]] = TypeAdapter(ClientMessage)
CLIENT_MESSAGE_TYPES: Final = ("join", "leave", "offer", "answer", "candidate", "message", "ping")


# ----------------------------------------------------------------------------------------------------
# Server -> client (models for the schema and for clients; the server writes them with the *_json functions)


class _ServerMessage(BaseModel):
    # Lenient on purpose: a client parsing what a newer server sends should not trip over extensions.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class PeerInfo(BaseModel):
    """One peer of a room as the others see it; `name` and `meta` are null when the peer gave none."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    peer: PeerId
    name: str | None
    meta: dict[str, Any] | None


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _omitted() -> Any:
    """An optional server field that is left out when None (so its schema shows neither null nor a default)."""
    return Field(default=None, json_schema_extra=_drop_default)


class IceServer(BaseModel):
    """An RTCIceServer handed to clients in `welcome`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    urls: str | list[str]
    username: str | SkipJsonSchema[None] = _omitted()
    credential: str | SkipJsonSchema[None] = _omitted()


class Welcome(_ServerMessage):
    """The answer to `join`: your peer id, who is already in the room, and the ICE servers to use."""

    type: Literal["welcome"]
    peer: PeerId
    room: str
    peers: list[PeerInfo]
    iceServers: list[IceServer]
    resume: str | SkipJsonSchema[None] = _omitted()
    ref: Ref | SkipJsonSchema[None] = _omitted()


class PeerJoined(_ServerMessage):
    """Another peer joined your room."""

    type: Literal["peer-joined"]
    peer: PeerId
    name: str | None
    meta: dict[str, Any] | None


class PeerLeft(_ServerMessage):
    """Another peer left your room (by `leave` or by disconnecting)."""

    type: Literal["peer-left"]
    peer: PeerId


class RelayedOffer(_ServerMessage):
    """An offer from `from`."""

    type: Literal["offer"]
    from_: PeerId = Field(alias="from")
    sdp: str


class RelayedAnswer(_ServerMessage):
    """An answer from `from`."""

    type: Literal["answer"]
    from_: PeerId = Field(alias="from")
    sdp: str


class RelayedCandidate(_ServerMessage):
    """An ICE candidate from `from`; `null` marks the end of its candidates."""

    type: Literal["candidate"]
    from_: PeerId = Field(alias="from")
    candidate: IceCandidate | None


class RelayedMessage(_ServerMessage):
    """Application data from `from`."""

    type: Literal["message"]
    from_: PeerId = Field(alias="from")
    data: Any = Field(description="Any JSON value.")


class Pong(_ServerMessage):
    """The answer to `ping`."""

    type: Literal["pong"]


class ErrorMessage(_ServerMessage):
    """A client mistake; the connection stays open."""

    type: Literal["error"]
    code: ErrorCode
    message: str = Field(description="Human-readable; says what to change.")
    ref: Ref | SkipJsonSchema[None] = _omitted()


ServerMessage: TypeAlias = Annotated[
    Welcome
    | PeerJoined
    | PeerLeft
    | RelayedOffer
    | RelayedAnswer
    | RelayedCandidate
    | RelayedMessage
    | Pong
    | ErrorMessage,
    Field(discriminator="type"),
]
_SERVER_ADAPTER: Final[TypeAdapter[ServerMessage]] = TypeAdapter(ServerMessage)
SERVER_MESSAGE_TYPES: Final = (
    "welcome",
    "peer-joined",
    "peer-left",
    "offer",
    "answer",
    "candidate",
    "message",
    "pong",
    "error",
)


def parse_server_message(text: str | bytes) -> ServerMessage:
    """Validate one server message (for clients and tests); raises pydantic's ValidationError."""
    return _SERVER_ADAPTER.validate_json(text)


# ----------------------------------------------------------------------------------------------------
# Parsing client messages


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Validate one client message from its frame text.

    Raises:
        SignalingError: ``bad-json``, ``invalid-message`` (the message names the field path) or
            ``unknown-type``; ``ref`` is the message's ``id`` whenever that id is itself valid.
    """
    try:
        return _CLIENT_ADAPTER.validate_json(text)
    except ValidationError as exc:
        raise _classify(exc, text) from None
    except TypeError:
        # Some pydantic versions refuse a str holding a lone surrogate this way. The transport's strict UTF-8
        # decoding never produces one, but this function must hold for any str.
        if isinstance(text, str):
            raise _bad_json(_SURROGATE) from None
        raise


_SURROGATE: Final = "it holds a lone surrogate, which UTF-8 cannot encode"


def _valid_ref(value: object) -> Ref | None:
    if isinstance(value, str):
        return value if len(value) <= MAX_ID_LENGTH else None
    if type(value) is int:  # not bool
        return value
    return None


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
    ref = _valid_ref(obj.get("id"))
    if "type" not in obj:
        return SignalingError(ErrorCode.INVALID_MESSAGE, 'type: Field required (e.g. "join")', ref)
    tag = obj["type"]
    if not isinstance(tag, str):
        return SignalingError(
            ErrorCode.INVALID_MESSAGE, f"type: Input should be a valid string, got {_json_kind(tag)}", ref
        )
    if tag not in CLIENT_MESSAGE_TYPES:
        shown = tag if len(tag) <= 64 else tag[:61] + "..."
        return SignalingError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {shown!r}; known types: {', '.join(CLIENT_MESSAGE_TYPES)}",
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


# ----------------------------------------------------------------------------------------------------
# Serializing server messages: compact JSON; optional fields that are None are omitted.
#
# Peer ids are URL-safe strings made by the hub, so they go into the templates without escaping; everything a
# client wrote is escaped by json (strings) or pydantic_core (values).

PONG_JSON: Final = '{"type":"pong"}'


def _dumps(value: Any) -> str:
    # pydantic_core rather than json: no 4300-digit limit on the big integers a client may send as ``id``.
    return pydantic_core.to_json(value).decode()


def relayed_offer_json(sender: str, sdp: str) -> str:
    """``{"type":"offer","from":sender,"sdp":...}``."""
    # pydantic_core escapes a CRLF-laden SDP twice as fast as json's C encoder.
    return '{"type":"offer","from":"' + sender + '","sdp":' + pydantic_core.to_json(sdp).decode() + "}"


def relayed_answer_json(sender: str, sdp: str) -> str:
    """``{"type":"answer","from":sender,"sdp":...}``."""
    return '{"type":"answer","from":"' + sender + '","sdp":' + pydantic_core.to_json(sdp).decode() + "}"


def relayed_candidate_json(sender: str, candidate: IceCandidate | None) -> str:
    """``{"type":"candidate","from":sender,"candidate":...}``; the candidate holds only validated fields."""
    body = "null" if candidate is None else pydantic_core.to_json(candidate).decode()
    return '{"type":"candidate","from":"' + sender + '","candidate":' + body + "}"


def relayed_message_json(sender: str, data: Any) -> str:
    """``{"type":"message","from":sender,"data":...}``.

    Raises:
        NonFiniteNumber: data holds NaN or Infinity; answer with :func:`non_finite_error`.
    """
    return '{"type":"message","from":"' + sender + '","data":' + _dump_json_value(data) + "}"


class PeerEntry(NamedTuple):
    """A peer as listed in ``welcome`` and announced by ``peer-joined``."""

    peer: str
    name: str | None
    meta: Mapping[str, Any] | None


def peer_joined_json(peer: str, name: str | None, meta: Mapping[str, Any] | None) -> str:
    """``{"type":"peer-joined","peer":...,"name":...,"meta":...}``; name and meta are null when not given."""
    return _dumps({"type": "peer-joined", "peer": peer, "name": name, "meta": meta})


def peer_left_json(peer: str) -> str:
    """``{"type":"peer-left","peer":...}``."""
    return '{"type":"peer-left","peer":"' + peer + '"}'


def ice_servers_json(servers: Iterable[IceServer]) -> str:
    """Render the ``iceServers`` list once, to be spliced into every ``welcome``."""
    items = [server.model_dump(mode="json", exclude_none=True) for server in servers]
    return _dumps(items)


def welcome_json(
    peer: str,
    room: str,
    peers: Iterable[PeerEntry],
    ice_servers: str,
    *,
    resume: str | None = None,
    ref: Ref | None = None,
) -> str:
    """``welcome``; ``ice_servers`` is the pre-rendered JSON array from :func:`ice_servers_json`."""
    listed = [{"peer": p.peer, "name": p.name, "meta": p.meta} for p in peers]
    head = '{"type":"welcome","peer":"' + peer + '","room":' + _quote(room)
    tail = ""
    if resume is not None:
        tail += ',"resume":' + _quote(resume)
    if ref is not None:
        tail += ',"ref":' + _dumps(ref)
    return head + ',"peers":' + _dumps(listed) + ',"iceServers":' + ice_servers + tail + "}"


def error_json(code: ErrorCode | str, message: str, ref: Ref | None = None) -> str:
    """``{"type":"error","code":...,"message":...[,"ref":...]}``."""
    text = '{"type":"error","code":' + _quote(str(code)) + ',"message":' + _quote(message)
    if ref is not None:
        text += ',"ref":' + _dumps(ref)
    return text + "}"


# ----------------------------------------------------------------------------------------------------
# JSON Schema


def protocol_json_schema() -> dict[str, Any]:
    """One JSON Schema (draft 2020-12) document for the whole protocol, generated from the models.

    ``$defs`` holds every message; ``ClientMessage`` and ``ServerMessage`` are the two unions on ``type``.
    Client messages are described as validated (input), server messages as serialized (output).
    """
    ref_template = "#/$defs/{model}"
    client = _CLIENT_ADAPTER.json_schema(mode="validation", ref_template=ref_template)
    server = _SERVER_ADAPTER.json_schema(mode="serialization", ref_template=ref_template)
    defs: dict[str, Any] = {}
    for part in (client, server):
        for name, schema in part.pop("$defs", {}).items():
            if name in defs and defs[name] != schema:
                raise RuntimeError(f"schema definition {name!r} differs between client and server messages")
            defs[name] = schema
    client["description"] = "A message sent by a client to the server."
    server["description"] = "A message sent by the server to a client."
    defs["ClientMessage"] = client
    defs["ServerMessage"] = server
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Signaling protocol v{PROTOCOL_VERSION}",
        "description": (
            "WebRTC signaling over WebSocket text frames, one JSON object per frame. Unknown fields are "
            "ignored. See docs/protocol.md."
        ),
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": defs,
    }

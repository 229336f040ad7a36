"""Protocol v1 messages as pydantic models: the wire contract, its validation and its JSON Schema.

Client messages are validated straight from the frame text with one ``validate_json`` call on a union
discriminated by ``type`` (signaling.protocol.parse). Server messages have models too, for the schema and for
clients that parse them; the server writes them with signaling.protocol.encode, because relays are the hot path.
"""

from __future__ import annotations

import math
import typing
from typing import Annotated, Any, Final, Literal, NotRequired, TypeAlias

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    with_config,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from .errors import ErrorCode, Ref
from .facts import MAX_ID_LENGTH, MAX_META_BYTES, MAX_NAME_LENGTH, ROOM_PATTERN

__all__ = [
    "CLIENT_ADAPTER",
    "CLIENT_MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "RELAYED_MESSAGE_TYPES",
    "SERVER_ADAPTER",
    "SERVER_MESSAGE_TYPES",
    "Answer",
    "Candidate",
    "ClientMessage",
    "ErrorMessage",
    "IceCandidate",
    "IceServer",
    "IceServersUpdate",
    "Join",
    "Leave",
    "Message",
    "NonFiniteNumber",
    "Offer",
    "PeerInfo",
    "PeerJoined",
    "PeerLeft",
    "Ping",
    "Pong",
    "RelayedAnswer",
    "RelayedCandidate",
    "RelayedMessage",
    "RelayedOffer",
    "RelayedRequest",
    "ServerMessage",
    "Welcome",
    "dump_json_value",
]

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


def dump_json_value(value: Any) -> str:
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
        size = len(dump_json_value(meta).encode())
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


_ID_DESCRIPTION: Final = "Echoed back as `ref` in the `welcome` or `error` this message causes."


class _ClientMessage(BaseModel):
    # Strict: a wire protocol should not turn "1" into 1 or 1.0 into 1. Unknown fields are ignored (contract).
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: MessageId | None = Field(default=None, description=_ID_DESCRIPTION)


class Join(_ClientMessage):
    """Join a room; answered by `welcome`, and every other peer there gets `peer-joined`."""

    type: Literal["join"]
    room: RoomName
    name: PeerName | None = None
    meta: Meta | None = Field(default=None, description="A JSON object of at most 1 KiB serialized.")
    token: str | None = None
    resumable: bool | None = Field(
        default=None, description="Ask for a resumable session: `welcome` then carries a `resume` token."
    )
    resume: str | None = Field(default=None, description="The `resume` token of the session to resume.")
    last_seq: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="With `resume`: the highest `seq` the client has processed (0 when none)."
    )


class Leave(_ClientMessage):
    """Leave the room; the others get `peer-left`, and the connection may `join` again."""

    type: Literal["leave"]


# The relayed messages are TypedDicts rather than models: validated into plain dicts, which they stay while relayed
# and then dropped; making a dict costs about 0.5 us less per message than making a model, on the relay's hot path.
RelayedId: TypeAlias = Annotated[MessageId | None, Field(description=_ID_DESCRIPTION)]


@with_config(ConfigDict(strict=True, extra="ignore"))
class Offer(TypedDict):
    """An SDP offer for one peer of the room."""

    id: NotRequired[RelayedId]
    type: Literal["offer"]
    to: PeerId
    sdp: str


@with_config(ConfigDict(strict=True, extra="ignore"))
class Answer(TypedDict):
    """An SDP answer for one peer of the room."""

    id: NotRequired[RelayedId]
    type: Literal["answer"]
    to: PeerId
    sdp: str


@with_config(ConfigDict(strict=True, extra="ignore"))
class Candidate(TypedDict):
    """A trickled ICE candidate for one peer of the room; `null` marks the end of candidates."""

    id: NotRequired[RelayedId]
    type: Literal["candidate"]
    to: PeerId
    candidate: IceCandidate | None


@with_config(ConfigDict(strict=True, extra="ignore"))
class Message(TypedDict):
    """Application data for one peer (`to`) or, without `to`, for every other peer of the room."""

    id: NotRequired[RelayedId]
    type: Literal["message"]
    to: NotRequired[PeerId | None]
    data: Annotated[Any, Field(description="Any JSON value.")]


class Ping(_ClientMessage):
    """Answered by `pong`; lets a client check that the signaling path is alive."""

    type: Literal["ping"]


#: What a client sends: a model (join, leave, ping), or a plain dict for the relayed ones (``RelayedRequest``).
ClientMessage: TypeAlias = Annotated[
    Join | Leave | Offer | Answer | Candidate | Message | Ping, Field(discriminator="type")
]
RelayedRequest: TypeAlias = Offer | Answer | Candidate | Message
CLIENT_ADAPTER: Final[TypeAdapter[ClientMessage]] = TypeAdapter(ClientMessage)


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
    resumed: bool | SkipJsonSchema[None] = _omitted()
    ref: Ref | SkipJsonSchema[None] = _omitted()


class PeerJoined(_ServerMessage):
    """Another peer joined your room."""

    type: Literal["peer-joined"]
    peer: PeerId
    name: str | None
    meta: dict[str, Any] | None
    seq: int | SkipJsonSchema[None] = _omitted()


class PeerLeft(_ServerMessage):
    """Another peer left your room (by `leave` or by disconnecting)."""

    type: Literal["peer-left"]
    peer: PeerId
    seq: int | SkipJsonSchema[None] = _omitted()


class RelayedOffer(_ServerMessage):
    """An offer from `from`."""

    type: Literal["offer"]
    from_: PeerId = Field(alias="from")
    sdp: str
    seq: int | SkipJsonSchema[None] = _omitted()


class RelayedAnswer(_ServerMessage):
    """An answer from `from`."""

    type: Literal["answer"]
    from_: PeerId = Field(alias="from")
    sdp: str
    seq: int | SkipJsonSchema[None] = _omitted()


class RelayedCandidate(_ServerMessage):
    """An ICE candidate from `from`; `null` marks the end of its candidates."""

    type: Literal["candidate"]
    from_: PeerId = Field(alias="from")
    candidate: IceCandidate | None
    seq: int | SkipJsonSchema[None] = _omitted()


class RelayedMessage(_ServerMessage):
    """Application data from `from`: a peer's id, or `"server"` when the application's backend sent it."""

    type: Literal["message"]
    from_: PeerId = Field(alias="from")
    data: Any = Field(description="Any JSON value.")
    seq: int | SkipJsonSchema[None] = _omitted()


class Pong(_ServerMessage):
    """The answer to `ping`."""

    type: Literal["pong"]


class IceServersUpdate(_ServerMessage):
    """Fresh ICE servers for the peer connections you open or restart from now on (TURN credentials expire).

    Sent to joined peers before their TURN credentials from `welcome` (or from the previous update) run out;
    apply with `RTCPeerConnection.setConfiguration`.
    """

    type: Literal["ice-servers"]
    iceServers: list[IceServer]


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
    | IceServersUpdate
    | ErrorMessage,
    Field(discriminator="type"),
]
SERVER_ADAPTER: Final[TypeAdapter[ServerMessage]] = TypeAdapter(ServerMessage)


def _type_tags(union: Any) -> tuple[str, ...]:
    """The ``type`` literals of a union's members, in order: the lists below come from the models."""
    if typing.get_origin(union) is Annotated:
        union = typing.get_args(union)[0]
    return tuple(typing.get_args(typing.get_type_hints(m)["type"])[0] for m in typing.get_args(union))


CLIENT_MESSAGE_TYPES: Final = _type_tags(ClientMessage)
RELAYED_MESSAGE_TYPES: Final = _type_tags(RelayedRequest)
SERVER_MESSAGE_TYPES: Final = _type_tags(ServerMessage)

"""Serializing server messages: compact JSON from templates, because relays are the hot path.

A template around an already-escaped payload beats building and dumping a model. Optional fields that are None
are omitted. Peer ids are URL-safe strings made by the room layer, so they go into the templates without
escaping; everything a client wrote is escaped by json (strings) or pydantic_core (values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring as _quote
from typing import Any, Final, Protocol

import pydantic_core

from .errors import ErrorCode, Ref
from .models import IceCandidate, IceServer, dump_json_value

__all__ = [
    "PONG_JSON",
    "Listed",
    "error_json",
    "ice_servers_json",
    "ice_servers_update_json",
    "peer_entry_json",
    "peer_joined_json",
    "peer_left_json",
    "relayed_answer_json",
    "relayed_candidate_json",
    "relayed_message_json",
    "relayed_offer_json",
    "welcome_json",
]

PONG_JSON: Final = '{"type":"pong"}'


class Listed(Protocol):
    """A peer as ``welcome`` lists it and ``peer-joined`` announces it (the room layer's members are such)."""

    @property
    def peer(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def meta(self) -> Mapping[str, Any] | None: ...


def _dumps(value: Any) -> str:
    # pydantic_core rather than json: no 4300-digit limit on the big integers a client may send as ``id``.
    return pydantic_core.to_json(value).decode()


def _orjson_dumps() -> Callable[[Any], bytes] | None:
    """orjson's ``dumps``, an optional accelerator (the ``fast`` extra), if installed."""
    try:
        from orjson import dumps
    except ImportError:
        return None
    return dumps


_fast_dumps = _orjson_dumps()
if _fast_dumps is None:

    def _validated_json(value: str | IceCandidate) -> str:
        return pydantic_core.to_json(value).decode()

else:
    fast_dumps: Callable[[Any], bytes] = _fast_dumps

    def _validated_json(value: str | IceCandidate) -> str:
        """A validated SDP string or candidate as JSON: orjson when installed (the ``fast`` extra; 0.3 us less per
        candidate than pydantic_core), pydantic_core for what orjson refuses (an integer past 64 bits)."""
        try:
            return fast_dumps(value).decode()
        except TypeError:
            return pydantic_core.to_json(value).decode()


def relayed_offer_json(sender: str, sdp: str) -> str:
    """``{"type":"offer","from":sender,"sdp":...}``."""
    return '{"type":"offer","from":"' + sender + '","sdp":' + _validated_json(sdp) + "}"


def relayed_answer_json(sender: str, sdp: str) -> str:
    """``{"type":"answer","from":sender,"sdp":...}``."""
    return '{"type":"answer","from":"' + sender + '","sdp":' + _validated_json(sdp) + "}"


def relayed_candidate_json(sender: str, candidate: IceCandidate | None) -> str:
    """``{"type":"candidate","from":sender,"candidate":...}``; the candidate holds only validated fields."""
    body = "null" if candidate is None else _validated_json(candidate)
    return '{"type":"candidate","from":"' + sender + '","candidate":' + body + "}"


def relayed_message_json(sender: str, data: Any) -> str:
    """``{"type":"message","from":sender,"data":...}``.

    Raises:
        NonFiniteNumber: data holds NaN or Infinity; answer with :func:`non_finite_error`.
    """
    return '{"type":"message","from":"' + sender + '","data":' + dump_json_value(data) + "}"


def peer_entry_json(peer: Listed) -> str:
    """``{"peer":...,"name":...,"meta":...}``: one entry of ``welcome.peers``; name and meta are null when not given."""
    return _dumps({"peer": peer.peer, "name": peer.name, "meta": peer.meta})


def peer_joined_json(peer: Listed) -> str:
    """``{"type":"peer-joined","peer":...,"name":...,"meta":...}``."""
    return '{"type":"peer-joined",' + peer_entry_json(peer)[1:]


def peer_left_json(peer: str) -> str:
    """``{"type":"peer-left","peer":...}``."""
    return '{"type":"peer-left","peer":"' + peer + '"}'


def ice_servers_update_json(ice_servers: str) -> str:
    """``{"type":"ice-servers","iceServers":[...]}``; ``ice_servers`` is a JSON array from :func:`ice_servers_json`."""
    return '{"type":"ice-servers","iceServers":' + ice_servers + "}"


def ice_servers_json(servers: Iterable[IceServer]) -> str:
    """Render the ``iceServers`` list once, to be spliced into every ``welcome``."""
    items = [server.model_dump(mode="json", exclude_none=True) for server in servers]
    return _dumps(items)


def welcome_json(
    peer: str,
    room: str,
    peers: Iterable[Listed],
    ice_servers: str,
    *,
    resume: str | None = None,
    resumed: bool | None = None,
    ref: Ref | None = None,
) -> str:
    """``welcome``; ``ice_servers`` is the pre-rendered JSON array from :func:`ice_servers_json`."""
    listed = "[" + ",".join(peer_entry_json(p) for p in peers) + "]"
    head = '{"type":"welcome","peer":"' + peer + '","room":' + _quote(room)
    tail = ""
    if resume is not None:
        tail += ',"resume":' + _quote(resume)
    if resumed is not None:
        tail += ',"resumed":' + ("true" if resumed else "false")
    if ref is not None:
        tail += ',"ref":' + _dumps(ref)
    return head + ',"peers":' + listed + ',"iceServers":' + ice_servers + tail + "}"


def error_json(code: ErrorCode | str, message: str, ref: Ref | None = None) -> str:
    """``{"type":"error","code":...,"message":...[,"ref":...]}``."""
    text = '{"type":"error","code":' + _quote(str(code)) + ',"message":' + _quote(message)
    if ref is not None:
        text += ',"ref":' + _dumps(ref)
    return text + "}"

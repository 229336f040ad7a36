"""The PeerJS server protocol on the wire, as peers/peerjs-server speaks it and the ``peerjs`` client expects it.

Client to server, JSON text: ``{"type", "dst", "payload"}``; the types relayed are OFFER, ANSWER, CANDIDATE,
LEAVE and EXPIRE; HEARTBEAT is accepted and unanswered; anything else (another type, not JSON, not an object)
is ignored, as the original does. Server to client: ``OPEN`` once the id is the connection's, ``ID-TAKEN`` or
``ERROR`` (then a close), a relayed message as ``{"type","src","dst","payload"}`` with ``src`` always set by the
server, and ``EXPIRE`` (``src`` the peer that never came) for what waited in vain.

The error texts are the original's (its ``Errors`` enum), so apps that match on them keep working.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import pydantic_core

from signaling.protocol.facts import MAX_ID_LENGTH, ROOM_PATTERN
from signaling.protocol.models import NonFiniteNumber, dump_json_value
from signaling.rooms.peers import FOREIGN_MARK

__all__ = [
    "CONNECTION_LIMIT_EXCEED",
    "HEARTBEAT",
    "ID_TAKEN_JSON",
    "INVALID_ID",
    "INVALID_KEY",
    "INVALID_TOKEN",
    "INVALID_WS_PARAMETERS",
    "NOT_QUEUED",
    "OPEN_JSON",
    "Relayed",
    "error_json",
    "expire_json",
    "parse",
    "peer_of",
    "room_of",
    "valid_id",
    "valid_key",
]

OPEN_JSON: Final = '{"type":"OPEN"}'
ID_TAKEN_JSON: Final = '{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}'
HEARTBEAT: Final = "HEARTBEAT"
#: What a client may send for another peer; the server sets ``src`` and passes on ``dst`` and ``payload``.
RELAYED_TYPES: Final = frozenset({"OFFER", "ANSWER", "CANDIDATE", "LEAVE", "EXPIRE"})
#: Relayed types that are dropped, not queued, when their peer is not connected.
NOT_QUEUED: Final = frozenset({"LEAVE", "EXPIRE"})

INVALID_KEY: Final = "Invalid key provided"
INVALID_TOKEN: Final = "Invalid token provided"
INVALID_WS_PARAMETERS: Final = "No id, token, or key supplied to websocket server"
CONNECTION_LIMIT_EXCEED: Final = "Server has reached its concurrent user limit"
#: Ours: the original takes any string; the client itself only makes ids that pass ``valid_id``.
INVALID_ID: Final = "Invalid id provided"

#: The ids the peerjs client accepts (its validateId), at most MAX_ID_LENGTH characters: a fresh id from
#: ``/id`` (a UUID) passes, and no id can hold ``FOREIGN_MARK`` or the cluster's separators (``|``, ``,``).
_ID = re.compile(r"[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*")
#: Keys are named like native rooms.
_KEY = re.compile(ROOM_PATTERN)
#: The room namespace of PeerJS keys: native room names cannot hold the mark.
ROOM_PREFIX: Final = "peerjs" + FOREIGN_MARK


def codec(*, fast: bool = True) -> tuple[Callable[[str], Any], Callable[[Any], str]]:
    """(loads, dumps): orjson when installed (the ``fast`` extra; a CANDIDATE parsed and written again costs a
    third of pydantic_core's time), which reads numbers as JavaScript does (past 64 bits, a double; past a
    double, an error), so what it reads it can write; else pydantic_core, whose infinities ``dumps`` refuses
    (NonFiniteNumber). Both refuse NaN and Infinity, which are not JSON. ``fast=False``: pydantic_core anyway."""
    try:
        if not fast:
            raise ImportError("pydantic_core asked for")
        import orjson
    except ImportError:
        return (lambda text: pydantic_core.from_json(text, allow_inf_nan=False)), dump_json_value
    loads, dumps = orjson.loads, orjson.dumps
    return loads, lambda value: dumps(value).decode()


_loads, _dumps = codec()


def valid_id(peer_id: str) -> bool:
    return len(peer_id) <= MAX_ID_LENGTH and _ID.fullmatch(peer_id) is not None


def valid_key(key: str) -> bool:
    return _KEY.match(key) is not None


def room_of(key: str) -> str:
    """The room that holds a key's peers."""
    return ROOM_PREFIX + key


def peer_of(key: str, peer_id: str) -> str:
    """The room layer's peer id of a PeerJS id: the key's namespace, so one id may live under two keys."""
    return key + FOREIGN_MARK + peer_id


def error_json(msg: str) -> str:
    return '{"type":"ERROR","payload":{"msg":' + dump_json_value(msg) + "}}"


def expire_json(src: str, dst: str) -> str:
    """What the sender of messages that waited in vain for ``src`` gets (``dst``: the sender)."""
    return '{"type":"EXPIRE","src":' + dump_json_value(src) + ',"dst":' + dump_json_value(dst) + "}"


class Relayed(NamedTuple):
    """A message for another peer: its ``type``, its ``dst`` (None when the client sent none, or not a short
    string) and the ``text`` that peer gets. A tuple: made per message, it must cost little."""

    type: str
    dst: str | None
    text: str


def parse(text: str, src: str) -> Relayed | str | None:
    """A client's text: a Relayed message from ``src``, ``HEARTBEAT``, or None for what is ignored (not JSON, not
    an object, another type). NaN and Infinity are not JSON; they are refused here, so never relayed."""
    try:
        msg = _loads(text)
    except ValueError:
        return None
    if type(msg) is not dict:
        return None
    kind = msg.get("type")
    if kind == HEARTBEAT:
        return HEARTBEAT
    if type(kind) is not str or kind not in RELAYED_TYPES:
        return None
    dst = msg.get("dst")
    if type(dst) is not str or not dst or len(dst) > MAX_ID_LENGTH:
        return Relayed(kind, None, "")
    # The original's order and fields: type, src, dst, payload (absent when the client sent none).
    head = '{"type":"' + kind + '","src":"' + src + '","dst":' + _dumps(dst)
    if "payload" not in msg:
        return Relayed(kind, dst, head + "}")
    try:
        return Relayed(kind, dst, head + ',"payload":' + _dumps(msg["payload"]) + "}")
    except NonFiniteNumber:  # a number past a double (1e999), read as an infinity: not JSON either
        return None

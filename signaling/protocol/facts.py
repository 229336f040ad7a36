"""The protocol's facts that the server and every client must agree on, each written once, here.

The Python side imports them; the browser client reads web/protocol.js, which is generated from this module
(``python -m signaling.protocol.schema --write``) and checked for drift by the tests, like the JSON Schema.
The server's settings take their defaults from here, and so do the room layer's classes, so that an
``InMemoryDirectory()`` in a test behaves as the server does.
"""

from __future__ import annotations

import json
from typing import Final

__all__ = [
    "DEFAULT_MAX_GHOSTS",
    "DEFAULT_MAX_GHOSTS_PER_ADDRESS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_ROOMS",
    "DEFAULT_RESUME_BUFFER",
    "DEFAULT_RESUME_BUFFER_BYTES",
    "DEFAULT_RESUME_GRACE",
    "DEFAULT_ROOM_MAX_PEERS",
    "DEFAULT_WEBHOOK_QUEUE",
    "DEFAULT_WEBHOOK_RETRY_FOR",
    "END_SESSION_CLOSE_CODE",
    "FINAL_CLOSE_CODES",
    "MAX_ID_LENGTH",
    "MAX_META_BYTES",
    "MAX_NAME_LENGTH",
    "REMOVED_CLOSE_CODE",
    "ROOM_PATTERN",
    "SERVER_SENDER",
    "TAKEN_OVER_CLOSE_CODE",
    "render_js",
]

# ---------------------------------------------------------------------------------------------- fields

#: Room names: 1 to 64 characters of ``[A-Za-z0-9_-]``.
ROOM_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
#: Longest ``name`` of a peer.
MAX_NAME_LENGTH: Final = 64
#: Largest ``meta`` of a peer, in bytes of compact UTF-8 JSON.
MAX_META_BYTES: Final = 1024
#: Longest string ``id`` a client may send; the server echoes it back as ``ref``.
MAX_ID_LENGTH: Final = 64

# ---------------------------------------------------------------------------------------------- sessions

#: A close that the client itself starts with this code ends its session at once, as ``leave`` does (no grace).
#: Any other end of a connection, every close the server started included, is a drop: a resumable session
#: outlives it for the grace period.
END_SESSION_CLOSE_CODE: Final = 1000
#: The server closes a connection with this code when its session was resumed on another connection.
TAKEN_OVER_CLOSE_CODE: Final = 4001
#: The ``from`` of a ``message`` that the application's backend sent (the server API), not a peer: never a peer id,
#: which is 16 characters long.
SERVER_SENDER: Final = "server"
#: The server closes a connection with this code (reason "removed") when the application's backend removed its
#: peer (the server API): the session is over, its resume token dead, the others told ``peer-left``.
REMOVED_CLOSE_CODE: Final = 4003
#: Close codes after which a client neither resumes nor reconnects by itself: the server judged the client's own
#: behaviour (1002 a protocol violation, 1003 binary data, 1007 invalid UTF-8, 1008 a policy such as abuse or a
#: slow consumer, 1009 a message too big), or the session went on on another connection (4001), or the
#: application's backend removed the peer (4003). After any other
#: (1001 drain, 1006 drop, 1011 server error, a 1000 the client did not start) the clients resume.
FINAL_CLOSE_CODES: Final = (1002, 1003, 1007, 1008, 1009, TAKEN_OVER_CLOSE_CODE, REMOVED_CLOSE_CODE)

# ---------------------------------------------------------------------------------------------- defaults

#: Largest WebSocket message, in bytes (bigger: close 1009).
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024
#: Peers in one room (more: ``room-full``).
DEFAULT_ROOM_MAX_PEERS: Final = 8
#: Rooms in existence at once (a new one beyond: ``room-full``).
DEFAULT_MAX_ROOMS: Final = 10_000
#: Seconds a resumable session outlives a dropped connection.
DEFAULT_RESUME_GRACE: Final = 30.0
#: Room messages kept per resumable session for its replay, and their byte bound. A call's whole signaling, seen
#: by one peer joining a full room, is about 60 KB (docs/protocol.md, "Limits"): 128 KiB holds it twice.
DEFAULT_RESUME_BUFFER: Final = 512
DEFAULT_RESUME_BUFFER_BYTES: Final = 128 * 1024
#: Sessions in their grace period (ghosts) that one client address may leave behind (cluster-wide), and one
#: node: past either, the oldest end at once. With 64 connections per address per node, an address holds at most
#: (64 x nodes + 32) x 128 KiB of kept messages: 12 MiB with one node, 20 MiB with two.
DEFAULT_MAX_GHOSTS_PER_ADDRESS: Final = 32
DEFAULT_MAX_GHOSTS: Final = 10_000
#: Webhook events waiting or being sent, at most (one process's queue; in a cluster, the Redis outbox): past it,
#: new events are counted as lost rather than kept while a receiver is down. About 300 bytes each.
DEFAULT_WEBHOOK_QUEUE: Final = 100_000
#: Seconds a webhook event is retried for before it is given up (Standard Webhooks senders: hours to days).
DEFAULT_WEBHOOK_RETRY_FOR: Final = 3600.0


def render_js() -> str:
    """web/protocol.js: the facts a browser client needs, as an ES module."""
    pattern = ROOM_PATTERN.replace("/", r"\/")
    codes = ", ".join(str(code) for code in FINAL_CLOSE_CODES)
    return f"""\
// SPDX-License-Identifier: MIT
// Generated from signaling/protocol/facts.py by `python -m signaling.protocol.schema --write`: do not edit.
/** @file The facts of the signaling protocol that the server and its clients share (docs/protocol.md). */

/** Room names accepted by the protocol. */
export const ROOM_PATTERN = /{pattern}/;
/** Longest `name` of a peer. */
export const MAX_NAME_LENGTH = {MAX_NAME_LENGTH};
/** Largest `meta` of a peer, in bytes of compact UTF-8 JSON. */
export const MAX_META_BYTES = {MAX_META_BYTES};
/** Longest string `id` of a request. */
export const MAX_ID_LENGTH = {MAX_ID_LENGTH};
/** A close the client starts with this code ends its session at once (no resume). */
export const END_SESSION_CLOSE_CODE = {END_SESSION_CLOSE_CODE};
/** The session of this connection was resumed on another connection. */
export const TAKEN_OVER_CLOSE_CODE = {TAKEN_OVER_CLOSE_CODE};
/** The `from` of a `message` sent by the application's backend (the server API) rather than by a peer. */
export const SERVER_SENDER = {json.dumps(SERVER_SENDER)};
/** The application's backend removed this peer: its session is over. */
export const REMOVED_CLOSE_CODE = {REMOVED_CLOSE_CODE};
/** Close codes after which a client neither resumes nor reconnects by itself. */
export const FINAL_CLOSE_CODES = Object.freeze([{codes}]);
/** The server's default limits, for messages that explain them. */
export const DEFAULTS = Object.freeze({json.dumps(_js_defaults(), separators=(", ", ": "))});
"""


def _js_defaults() -> dict[str, float | int]:
    return {
        "maxMessageSize": DEFAULT_MAX_MESSAGE_SIZE,
        "roomMaxPeers": DEFAULT_ROOM_MAX_PEERS,
        "resumeGrace": DEFAULT_RESUME_GRACE,
    }

// SPDX-License-Identifier: MIT
// Generated from signaling/protocol/facts.py by `python -m signaling.protocol.schema --write`: do not edit.
/** @file The facts of the signaling protocol that the server and its clients share (docs/protocol.md). */

/** Room names accepted by the protocol. */
export const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Longest `name` of a peer. */
export const MAX_NAME_LENGTH = 64;
/** Largest `meta` of a peer, in bytes of compact UTF-8 JSON. */
export const MAX_META_BYTES = 1024;
/** Longest string `id` of a request. */
export const MAX_ID_LENGTH = 64;
/** A close the client starts with this code ends its session at once (no resume). */
export const END_SESSION_CLOSE_CODE = 1000;
/** The session of this connection was resumed on another connection. */
export const TAKEN_OVER_CLOSE_CODE = 4001;
/** The `from` of a `message` sent by the application's backend (the server API) rather than by a peer. */
export const SERVER_SENDER = "server";
/** The `meta.kind` of a WHIP or WHEP session's peer: it offers once and wants an answer with every candidate. */
export const ENDPOINT_KINDS = Object.freeze(["whip", "whep"]);
/** The `data.type` of the `message` that tells such a session its media ended (it then leaves). */
export const ENDPOINT_ENDED = "ended";
/** The application's backend removed this peer: its session is over. */
export const REMOVED_CLOSE_CODE = 4003;
/** Close codes after which a client neither resumes nor reconnects by itself. */
export const FINAL_CLOSE_CODES = Object.freeze([1002, 1003, 1007, 1008, 1009, 4001, 4003]);
/** The server's default limits, for messages that explain them. */
export const DEFAULTS = Object.freeze({"maxMessageSize": 65536, "roomMaxPeers": 8, "resumeGrace": 30.0});

"""The server API: what a backend reads of the rooms and does to them, over HTTP on the server's port.

Off unless ``api_key`` is set. Every request carries ``Authorization: Bearer <key>``, compared in constant time;
a wrong or missing key is a 401, and an address past its failure budget (the room tokens' ``AuthThrottle``) a
429 instead, but a right key is never refused for it: a guesser behind a backend's NAT must not lock it out.
Answers that touch the rooms come ``Later``: in cluster mode they go through Redis, so they cover every node
(a removal reaches the node holding the connection; a message is sent as a peer's would be).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs, unquote

from signaling.protocol.encode import relayed_message_json
from signaling.protocol.errors import SignalingError
from signaling.protocol.facts import SERVER_SENDER
from signaling.protocol.models import NonFiniteNumber
from signaling.rooms.auth import AuthThrottle
from signaling.rooms.backends import Backends
from signaling.ws.aio.server import Later
from signaling.ws.http11 import Headers, Request, Response

from .routes import SECURITY_HEADERS

__all__ = ["API_PREFIX", "DEFAULT_LIMIT", "MAX_LIMIT", "ServerApi"]

API_PREFIX: Final = "/api/v1/"
#: Rooms per page of ``GET /api/v1/rooms`` unless ``?limit=`` says otherwise, and the most it may say.
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000


def json_response(status: int, body: object) -> Response:
    headers = Headers([("Content-Type", "application/json"), ("Cache-Control", "no-store"), *SECURITY_HEADERS])
    return Response(status, headers, json.dumps(body, separators=(",", ":")).encode())


def _error(status: int, message: str, extra: tuple[tuple[str, str], ...] = ()) -> Response:
    response = json_response(status, {"error": message})
    for name, value in extra:
        response.headers.add(name, value)
    return response


def _no_constant(name: str) -> object:
    """NaN and Infinity, which Python's json reads, are not JSON: a peer's parser would refuse them."""
    raise ValueError(f"{name} is not JSON")


class ServerApi:
    """Routes ``/api/v1/...`` for a client address that the caller has resolved (behind trusted proxies)."""

    def __init__(self, key: str, throttle: AuthThrottle, backends: Backends, clock: Callable[[], float]) -> None:
        self._key = key.encode("utf-8")
        self.throttle = throttle
        self.backends = backends
        self.directory = backends.directory
        self.clock = clock

    def handle(self, request: Request, client: str) -> Response | Later:
        refusal = self._authenticate(request, client)
        if refusal is not None:
            return refusal
        try:
            parts = [unquote(p, errors="strict") for p in request.path[len(API_PREFIX) :].split("/")]
        except UnicodeDecodeError:
            return _error(404, "not found")
        method = request.method
        if parts == ["rooms"]:
            if method != "GET":
                return _error(405, "method not allowed", (("Allow", "GET"),))
            return self._list(request.query)
        if len(parts) == 2 and parts[0] == "rooms" and parts[1]:
            if method == "GET":
                return Later(self._room(parts[1]))
            if method == "DELETE":
                return Later(self._remove(parts[1], None))
            return _error(405, "method not allowed", (("Allow", "GET, DELETE"),))
        if len(parts) == 3 and parts[0] == "rooms" and parts[1] and parts[2] == "messages":
            if method != "POST":
                return _error(405, "method not allowed", (("Allow", "POST"),))
            return self._message(parts[1], request.body)
        if len(parts) == 4 and parts[0] == "rooms" and parts[1] and parts[2] == "peers" and parts[3]:
            if method == "DELETE":
                return Later(self._remove(parts[1], parts[3]))
            return _error(405, "method not allowed", (("Allow", "DELETE"),))
        return _error(404, "not found")

    def _authenticate(self, request: Request, client: str) -> Response | None:
        """None when the request carries the key; else the 401, or the 429 of an address past its budget."""
        scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
        # Header values arrive decoded as latin-1: encoded back, they are the bytes the client sent.
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("latin-1", "replace"), self._key):
            return None
        now = self.clock()
        wait = self.throttle.retry_after(client, now)
        self.throttle.failed(client, now)
        if wait is not None:
            return _error(
                429, "too many failed API keys from your address", (("Retry-After", str(max(1, round(wait)))),)
            )
        return _error(
            401, "this API needs Authorization: Bearer <SIGNALING_API_KEY>", (("WWW-Authenticate", "Bearer"),)
        )

    def _list(self, query: str) -> Response | Later:
        fields = parse_qs(query)
        after = fields.get("after", [""])[0]
        try:
            limit = int(fields.get("limit", [str(DEFAULT_LIMIT)])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            return _error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
        return Later(self._rooms(after, limit))

    async def _rooms(self, after: str, limit: int) -> Response:
        try:
            rooms = await self.directory.rooms(after, limit)
        except SignalingError as exc:
            return _error(503, exc.message, (("Retry-After", "1"),))
        body: dict[str, Any] = {"rooms": [{"room": r.room, "peers": r.peers, "seq": r.seq} for r in rooms]}
        body["next"] = rooms[-1].room if len(rooms) == limit else None
        return json_response(200, body)

    async def _remove(self, room: str, peer: str | None) -> Response:
        """Remove ``peer`` from ``room``, or every peer of it (None): 204, or 404 when there was none."""
        try:
            peers = [peer] if peer is not None else [m.peer for m in (await self.directory.roster(room)).members]
            removed = [p for p in peers if await self.backends.remove(room, p)]
        except SignalingError as exc:
            return _error(503, exc.message, (("Retry-After", "1"),))
        if not removed:
            return _error(404, f"no peer {peer!r} in room {room!r}" if peer is not None else f"no room {room!r}")
        return Response(204, Headers(list(SECURITY_HEADERS)))

    def _message(self, room: str, body: bytes) -> Response | Later:
        """``{"data": <any JSON>, "to": <peer id>?}``: a ``message`` from ``server`` to one peer or all."""
        try:
            payload = json.loads(body, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError):
            payload = None
        to = payload.get("to") if isinstance(payload, dict) else None
        if not isinstance(payload, dict) or "data" not in payload or not isinstance(to, str | None):
            return _error(400, 'the body must be a JSON object: {"data": <any JSON>, "to": "<peer id>" (optional)}')
        try:
            text = relayed_message_json(SERVER_SENDER, payload["data"])
        except NonFiniteNumber:
            return _error(400, "data holds NaN or Infinity, which JSON does not have")
        return Later(self._send(room, to, text))

    async def _send(self, room: str, to: str | None, text: str) -> Response:
        try:
            members = (await self.directory.roster(room)).members
        except SignalingError as exc:
            return _error(503, exc.message, (("Retry-After", "1"),))
        targets = [m for m in members if to is None or m.peer == to]
        if not targets:
            return _error(404, f"no peer {to!r} in room {room!r}" if members else f"no room {room!r}")
        self.backends.router.send_all(targets, "", text)  # kept for the resumable ones, as a peer's would be
        return json_response(202, {"delivered": len(targets)})

    async def _room(self, room: str) -> Response:
        try:
            roster = await self.directory.roster(room)
        except SignalingError as exc:
            return _error(503, exc.message, (("Retry-After", "1"),))
        if not roster.members:
            return _error(404, f"no room {room!r}")
        peers = [{"id": m.peer, "name": m.name, "meta": m.meta, "connected": bool(m.node)} for m in roster.members]
        return json_response(200, {"room": room, "seq": roster.seq, "peers": peers})

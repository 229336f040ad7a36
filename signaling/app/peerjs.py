"""The PeerJS endpoint: the PeerJS server's HTTP API and WebSocket under ``settings.peerjs_path``, wired to the
room layer through signaling/interop/peerjs/.

A PeerJS app switches servers with ``new Peer({host, port, path})``: the client asks ``{path}/{key}/id`` for an
id (unless it has one) and opens ``{path}/peerjs?key=&id=&token=``. The same checks as the native endpoint apply
before the upgrade (draining, browser origin, connections per address); what the original server answers after
the upgrade (an unknown key, missing parameters, a bad room token) is answered the same way here: ``ERROR`` and
a close. The HTTP API answers browsers of the allowed origins only (CORS), with the same origin policy as the
WebSockets.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs

import structlog

from signaling.interop.peerjs import wire
from signaling.interop.peerjs.session import PeerJSCounters, PeerJSSession
from signaling.protocol.errors import SignalingError
from signaling.protocol.facts import REMOVED_CLOSE_CODE, TAKEN_OVER_CLOSE_CODE
from signaling.rooms.driver import SessionDriver
from signaling.ws.aio.server import Later, ServerConnection, Upgrade
from signaling.ws.exceptions import ConnectionClosed
from signaling.ws.frames import CloseCode
from signaling.ws.handshake import is_upgrade_request
from signaling.ws.http11 import Headers, Request, Response

from .routes import SECURITY_HEADERS, not_found, refused
from .sockets import ProtocolSocket

if TYPE_CHECKING:
    from .wiring import SignalingApp

__all__ = ["PeerJS", "PeerJSSocket"]

log = structlog.get_logger("signaling.peerjs")

#: The WebSocket's name under the prefix, as the client builds it (``{path}peerjs?key=...``).
SOCKET_NAME: Final = "peerjs"
#: What ``GET {prefix}/`` says, as the original's does (its app.json).
ABOUT: Final = {
    "name": "PeerJS Server",
    "description": "A server side element to broker connections between PeerJS clients (served by signaling).",
    "website": "https://peerjs.com/",
}


class PeerJSSocket(ProtocolSocket):
    """A PeerJS WebSocket: the transport's handler, the session's sink, its driver's connection."""

    __slots__ = ("_peerjs", "driver")

    def __init__(self, peerjs: PeerJS, client: str, ws: ServerConnection, params: tuple[str, str, str] | str) -> None:
        app = peerjs.app
        super().__init__(app, client, ws)
        self._peerjs = peerjs
        s = app.settings
        app.connections += 1
        app.limits.opened(client)
        peerjs.sockets.add(self)
        if isinstance(params, str):  # refused after the upgrade, as the original does
            key, peer_id, token = "", "", ""
        else:
            key, peer_id, token = params
        session = PeerJSSession(
            app.backends,
            self,
            key=key,
            peer_id=peer_id,
            token=token,
            max_peers=s.peerjs_max_peers,
            expire_timeout=s.peerjs_expire_timeout,
            waiting=peerjs.waiting,
            counters=peerjs.counters,
            clock=app.wall_clock,
            logger=log.bind(conn=ws.id, client=client),
        )
        self.driver = SessionDriver(session, self, app.later if app.backends.waits else None)
        if isinstance(params, str):
            peerjs.counters.opened["refused"] += 1
            log.info("peerjs_refused", conn=ws.id, client=client, reason=params)
            ws.send_text(wire.error_json(params))
            ws.close(CloseCode.NORMAL)
            return
        self.driver.begin(session.open())

    @property
    def session(self) -> PeerJSSession:
        return self.driver.session

    # PeerSink
    def taken_over(self) -> None:
        self.session.moved()
        self.ws.close(TAKEN_OVER_CLOSE_CODE, "id taken over by a new connection with its token")

    def removed(self) -> None:
        self.session.moved()
        self.ws.close(REMOVED_CLOSE_CODE, "removed")

    def close(self) -> None:
        self.ws.close(CloseCode.NORMAL)

    # WebSocketHandler
    def on_text(self, text: str) -> None:
        app = self._app
        now = app.clock()
        if not self._limit.admit(len(text), now):
            self.refuse(text, now, None, peerjs=self.session.peer_id)  # PeerJS has no answer for it: dropped
            return
        app.messages += 1
        self.driver.feed(text)

    def on_binary(self, data: bytes) -> None:
        self.ws.close(CloseCode.UNSUPPORTED_DATA, "binary messages are not supported; send JSON text")

    def on_close(self, closed: ConnectionClosed) -> None:
        app = self._app
        app.connections -= 1
        app.limits.closed(self._client)
        self._peerjs.sockets.discard(self)
        self.driver.end(left=closed.by_peer)  # PeerJS has no end-session code: a close the client started
        log.info("disconnected", conn=self.ws.id, client=self._client, code=closed.code, reason=closed.reason)


class PeerJS:
    """The PeerJS endpoint of an app: its requests, its sockets, and the tick of messages waiting for peers."""

    def __init__(self, app: SignalingApp) -> None:
        self.app = app
        settings = app.settings
        self.prefix = settings.peerjs_path
        self.socket_path = self.prefix + "/" + SOCKET_NAME
        self.keys = frozenset(settings.peerjs_keys)
        self.counters = PeerJSCounters()
        self.sockets: set[PeerJSSocket] = set()
        self._waiting: set[PeerJSSession] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._period = max(0.02, min(0.1, settings.peerjs_expire_timeout / 10))

    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    # ------------------------------------------------------------------ waiting messages

    def waiting(self, session: PeerJSSession) -> None:
        """``session`` has messages waiting for peers: tick it until it has none."""
        self._waiting.add(session)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._period, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self.app.wall_clock()  # the sessions' clock
        for session in list(self._waiting):
            if not session.tick(now):
                self._waiting.discard(session)
        if self._waiting:
            self._timer = asyncio.get_running_loop().call_later(self._period, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close_all(self, code: int, reason: str) -> None:
        for socket in list(self.sockets):
            socket.ws.close(code, reason)

    # ------------------------------------------------------------------ requests

    def handle(self, request: Request, peer: tuple[str, int] | None) -> Response | Upgrade | Later:
        app = self.app
        headers = request.headers
        client = app.addresses.resolve(peer[0] if peer else None, headers)
        origin = headers.get("Origin")
        if not app.origins.allows(origin, headers.get("Host")):
            app.rejections["origin"] += 1
            log.info("origin_refused", client=client, origin=origin)
            return refused(403, "this page's origin may not use the PeerJS server here")
        path = request.path
        if path == self.socket_path and is_upgrade_request(request):
            return self._upgrade(request, client)
        cors = (("Access-Control-Allow-Origin", origin), ("Vary", "Origin")) if origin is not None else ()
        if request.method == "OPTIONS":  # a preflight: the client sends none, but a wrapped fetch may
            return Response(
                204,
                Headers(
                    [
                        *cors,
                        ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
                        ("Access-Control-Max-Age", "600"),
                        *SECURITY_HEADERS,
                    ]
                ),
            )
        if request.method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", cors, (("Allow", "GET, HEAD, OPTIONS"),))
        response = self._api(request, cors)
        if request.method == "HEAD" and isinstance(response, Response):  # RFC 9110 9.3.2: no content
            response.headers.add("Content-Length", str(len(response.body)))
            response.body = b""
        return response

    def _api(self, request: Request, cors: tuple[tuple[str, str], ...]) -> Response | Later:
        """GET {prefix}/, {prefix}/{key}/id, {prefix}/{key}/peers."""
        parts = request.path[len(self.prefix) :].strip("/").split("/")
        if parts == [""]:
            return _json(200, ABOUT, cors)
        if len(parts) != 2 or not wire.valid_key(parts[0]):
            return not_found(request)
        key, what = parts
        if what == "id":
            # What the original does: a random UUID, text/html, whatever the key (the socket checks it).
            return _text(200, str(uuid.uuid4()), cors, content_type="text/html; charset=utf-8")
        if what == "peers":
            if not self.app.settings.peerjs_discovery or key not in self.keys:
                return _text(401, "Unauthorized", cors)
            return Later(self._peers(key, cors))
        if what == SOCKET_NAME and key == SOCKET_NAME:
            return _text(426, "the PeerJS WebSocket: connect with the peerjs client", cors)
        return not_found(request)

    async def _peers(self, key: str, cors: tuple[tuple[str, str], ...]) -> Response:
        try:
            members = (await self.app.backends.directory.roster(wire.room_of(key))).members
        except SignalingError as exc:
            return _text(503, exc.message, cors)
        start = len(key) + 1
        return _json(200, [m.peer[start:] for m in members], cors)

    def _upgrade(self, request: Request, client: str) -> Response | Upgrade:
        app = self.app
        if not app.accepting:
            app.rejections["unavailable"] += 1
            return refused(503, "this server is not accepting connections now: connect to another", retry_after=1)
        refusal = app.limits.check(client, app.clock())
        if refusal is not None:
            app.rejections[refusal.reason] += 1
            return refused(429, refusal.text, retry_after=refusal.retry_after)
        params = self._params(request.query, client)
        return Upgrade(lambda ws: PeerJSSocket(self, client, ws, params))

    def _params(self, query: str, client: str) -> tuple[str, str, str] | str:
        """(key, id, token) of a socket that may open, or the original's error text for one that may not."""
        try:
            fields = parse_qs(query, max_num_fields=8)
        except ValueError:
            return wire.INVALID_WS_PARAMETERS
        key, peer_id, token = (fields.get(name, [""])[0] for name in ("key", "id", "token"))
        if not key or not peer_id or not token:
            return wire.INVALID_WS_PARAMETERS
        if key not in self.keys:
            return wire.INVALID_KEY
        if not wire.valid_id(peer_id):
            return wire.INVALID_ID
        authorizer = self.app.authorizer
        if authorizer is not None:
            try:
                name = authorizer.check(token, key, client).name
            except SignalingError:
                return wire.INVALID_TOKEN
            if name is not None and name != peer_id:  # the token names the one id it may hold
                return wire.INVALID_TOKEN
        return key, peer_id, token


def _text(
    status: int,
    body: str,
    cors: tuple[tuple[str, str], ...],
    extra: tuple[tuple[str, str], ...] = (),
    *,
    content_type: str = "text/plain; charset=utf-8",
) -> Response:
    headers = Headers([("Content-Type", content_type), ("Cache-Control", "no-store"), *cors, *SECURITY_HEADERS])
    for name, value in extra:
        headers.add(name, value)
    return Response(status, headers, body.encode())


def _json(status: int, body: object, cors: tuple[tuple[str, str], ...]) -> Response:
    headers = Headers([("Content-Type", "application/json"), ("Cache-Control", "no-store"), *cors, *SECURITY_HEADERS])
    return Response(status, headers, json.dumps(body, separators=(",", ":")).encode())

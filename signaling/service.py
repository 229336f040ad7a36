"""The one module that wires the signaling domain (sessions, hub) to the WebSocket transport and HTTP routes.

The transport knows nothing of rooms and the domain nothing of sockets; this module is where a WebSocket
connection becomes a PeerSink and its text messages become Session input.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import structlog

from . import __version__
from .config import Settings
from .errors import ErrorCode
from .hub import Hub, InMemoryHub
from .messages import IceServer, error_json
from .ratelimit import TokenBucket
from .routes import StaticFiles, http_response
from .session import Session
from .ws.aio.server import ServerConnection, Upgrade, WebSocketHandler
from .ws.frames import CloseCode
from .ws.handshake import is_upgrade_request
from .ws.http11 import Headers, Request, Response

__all__ = ["SignalingApp"]

log = structlog.get_logger("signaling")

#: Refused messages in a row after which a flooding connection is closed with 1008.
ABUSE_STRIKES = 100


class _PeerConnection:
    """A WebSocket carrying one signaling session: the transport's handler and the hub's sink at once."""

    __slots__ = ("_app", "_bucket", "_deadline", "session", "ws")

    def __init__(self, app: SignalingApp, ws: ServerConnection) -> None:
        self._app = app
        self.ws = ws
        self._bucket = TokenBucket(app.settings.rate_limit, app.settings.rate_burst, app.clock())
        logger = log.bind(conn=ws.id)
        self.session = Session(app.hub, self, ice_servers=app.ice_servers, logger=logger)
        app.connections += 1
        # The join deadline: idle sockets that never join must not pile up.
        self._deadline: asyncio.TimerHandle | None = app.loop_call_later(app.settings.join_timeout, self._join_deadline)
        logger.info("connected", remote=_remote(ws))

    # PeerSink
    def deliver(self, text: str) -> None:
        self.ws.send_text(text)

    # WebSocketHandler
    def on_text(self, text: str) -> None:
        if not self._bucket.allow(self._app.clock()):
            self._rate_limited(text)
            return
        self._app.messages += 1
        self.session.handle_text(text)

    def on_binary(self, data: bytes) -> None:
        # The protocol is JSON text only (protocol-v1: "A binary message closes the connection with 1003").
        self.ws.close(CloseCode.UNSUPPORTED_DATA, "binary messages are not supported; send JSON text")

    def on_close(self, code: int, reason: str) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._app.connections -= 1
        self.session.close()
        log.info("disconnected", conn=self.ws.id, code=code, reason=reason)

    def _join_deadline(self) -> None:
        self._deadline = None
        if not self.session.joined and not self.session.closed and self.ws.is_open:
            log.info("join_timeout", conn=self.ws.id)
            self.ws.close(CloseCode.POLICY_VIOLATION, "no join within the join timeout")

    def _rate_limited(self, text: str) -> None:
        if self._bucket.strikes >= ABUSE_STRIKES:
            log.warning("abuse_closed", conn=self.ws.id, peer=self.session.peer)
            self.ws.close(CloseCode.POLICY_VIOLATION, "persistent rate limit abuse")
            return
        ref = None
        try:  # the slow path only: find the id so the client can match the error
            value = json.loads(text)
            if isinstance(value, dict):
                candidate = value.get("id")
                if (isinstance(candidate, str) and len(candidate) <= 64) or (
                    isinstance(candidate, int) and not isinstance(candidate, bool)
                ):
                    ref = candidate
        except ValueError:
            pass
        self.ws.send_text(
            error_json(
                ErrorCode.RATE_LIMITED,
                f"over {self._bucket.rate:g} messages/s (burst {self._bucket.burst:g}); message dropped",
                ref,
            )
        )


def _remote(ws: ServerConnection) -> str | None:
    if ws.remote is None:
        return None
    return f"{ws.remote[0]}:{ws.remote[1]}"


class SignalingApp:
    """Routes requests: the signaling WebSocket on ``settings.path``, plain HTTP for everything else."""

    def __init__(self, settings: Settings, hub: Hub | None = None) -> None:
        self.settings = settings
        self.hub: Hub = hub or InMemoryHub(max_peers_per_room=settings.room_max_peers, max_rooms=settings.max_rooms)
        self.ice_servers = [IceServer.model_validate(s) for s in settings.ice_servers]
        self.static = StaticFiles(settings.web_root) if settings.web_root.is_dir() else None
        self.started = time.monotonic()
        self.connections = 0
        self.messages = 0
        self._upgrade = Upgrade(self._new_peer)
        self.clock = time.monotonic

    def loop_call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)

    def _new_peer(self, ws: ServerConnection) -> WebSocketHandler:
        return _PeerConnection(self, ws)

    def handle_request(self, request: Request, conn: ServerConnection) -> Response | Upgrade:
        if is_upgrade_request(request):
            if request.path == self.settings.path:
                return self._upgrade
            return Response(404, Headers([("Content-Type", "text/plain; charset=utf-8")]), b"not found\n")
        return http_response(
            request, ws_path=self.settings.path, static=self.static, health=self.health, metrics=self.metrics
        )

    def health(self) -> dict[str, object]:
        stats = self.hub.stats()
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "connections": self.connections,
            "rooms": stats.rooms,
            "peers": stats.peers,
        }

    def metrics(self) -> str:
        stats = self.hub.stats()
        lines = [
            "# HELP signaling_connections Open signaling WebSocket connections.",
            "# TYPE signaling_connections gauge",
            f"signaling_connections {self.connections}",
            "# HELP signaling_rooms Rooms with at least one peer.",
            "# TYPE signaling_rooms gauge",
            f"signaling_rooms {stats.rooms}",
            "# HELP signaling_peers Peers in rooms.",
            "# TYPE signaling_peers gauge",
            f"signaling_peers {stats.peers}",
            "# HELP signaling_messages_total Client messages accepted for handling.",
            "# TYPE signaling_messages_total counter",
            f"signaling_messages_total {self.messages}",
        ]
        return "\n".join(lines) + "\n"

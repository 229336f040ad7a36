"""The one module that wires the signaling domain (sessions, hub) to the WebSocket transport and HTTP routes.

The transport knows nothing of rooms and the domain nothing of sockets; this module is where a WebSocket
connection becomes a PeerSink and its text messages become Session input.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from signaling import __version__
from signaling.protocol.models import IceServer
from signaling.rooms.hub import Hub, InMemoryHub
from signaling.rooms.ratelimit import MessageRateLimit
from signaling.rooms.session import Session
from signaling.ws.aio.server import ServerConnection, Upgrade, WebSocketHandler
from signaling.ws.frames import CloseCode
from signaling.ws.handshake import is_upgrade_request
from signaling.ws.http11 import Request, Response

from .routes import StaticFiles, http_response, not_found
from .settings import Settings

__all__ = ["SessionSocket", "SignalingApp"]

log = structlog.get_logger("signaling")


class SessionSocket:
    """A WebSocket carrying one signaling session: the transport's handler and the hub's sink at once."""

    __slots__ = ("_app", "_deadline", "_limit", "session", "ws")

    def __init__(self, app: SignalingApp, ws: ServerConnection) -> None:
        self._app = app
        self.ws = ws
        self._limit = MessageRateLimit(app.settings.rate_limit, app.settings.rate_burst, time.monotonic())
        logger = log.bind(conn=ws.id)
        self.session = Session(app.hub, self, ice_servers=app.ice_servers, logger=logger)
        app.connections += 1
        # The join deadline: idle sockets that never join must not pile up.
        self._deadline: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            app.settings.join_timeout, self._join_deadline
        )
        logger.info("connected", remote=_remote(ws))

    # PeerSink
    def deliver(self, text: str) -> None:
        self.ws.send_text(text)

    # WebSocketHandler
    def on_text(self, text: str) -> None:
        if not self._limit.admit(time.monotonic()):
            reply = self._limit.refusal(text)
            if reply is None:
                log.warning("abuse_closed", conn=self.ws.id, peer=self.session.peer)
                self.ws.close(CloseCode.POLICY_VIOLATION, "persistent rate limit abuse")
            else:
                self.ws.send_text(reply)
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
        self._upgrade = Upgrade(self._new_session)

    def _new_session(self, ws: ServerConnection) -> WebSocketHandler:
        return SessionSocket(self, ws)

    def handle_request(self, request: Request) -> Response | Upgrade:
        if is_upgrade_request(request):
            if request.path == self.settings.path:
                return self._upgrade
            return not_found(request)
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

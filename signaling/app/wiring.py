"""The one module that wires the signaling domain (sessions, hub) to the WebSocket transport and HTTP routes.

The transport knows nothing of rooms and the domain nothing of sockets; this module is where a WebSocket
connection becomes a PeerSink and its text messages become Session input. It also owns what is decided per
connection or per request rather than per message: who the client is (behind a trusted proxy), whether its
browser origin may connect, its per-address limits, the join deadline, and the 1003/1008 closes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import structlog

from signaling import __version__
from signaling.protocol.models import IceServer
from signaling.rooms.auth import AuthThrottle, JoinAuthorizer, RoomTokens
from signaling.rooms.hub import Hub, InMemoryHub
from signaling.rooms.ice import IceServerList, TurnCredentials
from signaling.rooms.ratelimit import MessageRateLimit
from signaling.rooms.session import Session, SessionCounters
from signaling.ws.aio.server import ServerConnection, Upgrade
from signaling.ws.aio.stats import TransportStats
from signaling.ws.frames import CloseCode
from signaling.ws.handshake import is_upgrade_request
from signaling.ws.http11 import Request, Response

from .address_limits import AddressLimits
from .addresses import ClientAddresses, parse_networks
from .metrics import Metrics
from .origins import OriginPolicy
from .routes import StaticFiles, http_response, not_found, refused
from .settings import Settings

__all__ = ["SessionSocket", "SignalingApp"]

log = structlog.get_logger("signaling")


class SessionSocket:
    """A WebSocket carrying one signaling session: the transport's handler and the hub's sink at once."""

    __slots__ = ("_app", "_client", "_deadline", "_limit", "session", "ws")

    def __init__(self, app: SignalingApp, client: str, ws: ServerConnection) -> None:
        self._app = app
        self._client = client
        self.ws = ws
        ws.client_address = client
        settings = app.settings
        now = app.clock()
        self._limit = MessageRateLimit(
            settings.rate_limit,
            settings.rate_burst,
            settings.rate_limit_bytes,
            settings.rate_burst_bytes,
            now,
            abuse_strikes=settings.abuse_strikes,
        )
        logger = log.bind(conn=ws.id, client=client)
        authorize = app.authorizer.for_client(client) if app.authorizer is not None else None
        self.session = Session(
            app.hub,
            self,
            ice_servers=app.ice_servers,
            logger=logger,
            authorize=authorize,
            clock=app.wall_clock,
            counters=app.counters,
        )
        app.connected(self)
        # The join deadline: idle sockets that never join must not pile up.
        self._deadline: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            settings.join_timeout, self._join_deadline
        )
        logger.info("connected")

    # PeerSink
    def deliver(self, text: str) -> None:
        self.ws.send_text(text)

    # WebSocketHandler
    def on_text(self, text: str) -> None:
        app = self._app
        limit = self._limit
        now = app.clock()
        if not limit.admit(len(text), now):
            app.rate_limited += 1
            reply = limit.refusal(text, now)
            if reply is None:
                log.warning("abuse_closed", conn=self.ws.id, client=self._client, peer=self.session.peer)
                self.ws.close(CloseCode.POLICY_VIOLATION, "persistent rate limit abuse")
            else:
                app.counters.errors["rate-limited"] += 1
                self.ws.send_text(reply)
            return
        app.messages += 1
        self.session.handle_text(text)

    def on_binary(self, data: bytes) -> None:
        # The protocol is JSON text only (protocol-v1: "A binary message closes the connection with 1003").
        self.ws.close(CloseCode.UNSUPPORTED_DATA, "binary messages are not supported; send JSON text")

    def on_close(self, code: int, reason: str) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._app.disconnected(self)
        self.session.close()
        log.info("disconnected", conn=self.ws.id, client=self._client, code=code, reason=reason)

    def _join_deadline(self) -> None:
        self._deadline = None
        if not self.session.joined and not self.session.closed and self.ws.is_open:
            log.info("join_timeout", conn=self.ws.id, client=self._client)
            self.ws.close(CloseCode.POLICY_VIOLATION, "no join within the join timeout")

    @property
    def client(self) -> str:
        return self._client


class SignalingApp:
    """Routes requests: the signaling WebSocket on ``settings.path``, plain HTTP for everything else."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        #: Seconds for rates and deadlines; ``wall_clock`` for what others check against the date (token and
        #: TURN credential expiry).
        self.clock = clock
        self.wall_clock = wall_clock
        self.hub: Hub = hub or InMemoryHub(max_peers_per_room=settings.room_max_peers, max_rooms=settings.max_rooms)
        turn = None
        if settings.turn_secret is not None:
            turn = TurnCredentials(settings.turn_secret.get_secret_value(), settings.turn_urls, settings.turn_ttl)
        self.turn = turn
        self.ice_servers = IceServerList([IceServer.model_validate(s) for s in settings.ice_servers], turn)
        self.authorizer: JoinAuthorizer | None = None
        if settings.auth_secret is not None:
            self.authorizer = JoinAuthorizer(
                RoomTokens(settings.auth_secret.get_secret_value()),
                AuthThrottle(settings.auth_max_failures, settings.auth_failure_window),
                wall_clock,
            )
        self.addresses = ClientAddresses(parse_networks(settings.trusted_proxies), settings.proxy_header)
        self.origins = OriginPolicy(settings.allowed_origins)
        self.limits = AddressLimits(
            settings.max_connections_per_ip, settings.connection_rate_per_ip, settings.connection_burst_per_ip
        )
        self.static = StaticFiles(settings.web_root) if settings.web_root.is_dir() else None
        self.started = clock()
        #: Whether the server accepts new clients (/readyz); the process sets it once listening.
        self.ready = False
        self.sockets: set[SessionSocket] = set()
        self.connections = 0
        self.messages = 0
        self.rate_limited = 0
        self.counters = SessionCounters()
        #: Requests this app refused before they became WebSockets, by reason (the transport counts its own).
        self.rejections: Counter[str] = Counter()
        #: Set by the process to the transport server's stats, for /metrics.
        self.transport_stats: TransportStats | None = None
        self.metrics = Metrics(self)
        self._refresh: asyncio.TimerHandle | None = None

    @property
    def turn_credentials_issued(self) -> int:
        return self.turn.issued if self.turn is not None else 0

    # ------------------------------------------------------------------ requests

    def handle_request(self, request: Request, peer: tuple[str, int] | None) -> Response | Upgrade:
        if not is_upgrade_request(request):
            return http_response(
                request,
                ws_path=self.settings.path,
                static=self.static,
                health=self.health,
                ready=lambda: self.ready,
                metrics=self.metrics.render,
            )
        if request.path != self.settings.path:
            return not_found(request)
        headers = request.headers
        client = self.addresses.resolve(peer[0] if peer else None, headers)
        if not self.origins.allows(headers.get("Origin"), headers.get("Host")):
            self.rejections["origin"] += 1
            log.info("origin_refused", client=client, origin=headers.get("Origin"))
            return refused(403, "this page's origin may not open a signaling connection here")
        refusal = self.limits.check(client, self.clock())
        if refusal is not None:
            self.rejections[refusal.reason] += 1
            log.info("connection_refused", client=client, reason=refusal.reason)
            return refused(429, refusal.text, retry_after=refusal.retry_after)
        return Upgrade(lambda ws: SessionSocket(self, client, ws))

    # ------------------------------------------------------------------ sessions

    def connected(self, socket: SessionSocket) -> None:
        self.connections += 1
        self.limits.opened(socket.client)
        if self.turn is not None:
            self.sockets.add(socket)
            self._schedule_refresh()

    def disconnected(self, socket: SessionSocket) -> None:
        self.connections -= 1
        self.limits.closed(socket.client)
        self.sockets.discard(socket)

    def _schedule_refresh(self) -> None:
        """While there are sessions with TURN credentials, look for due refreshes every few seconds."""
        if self._refresh is None and self.turn is not None:
            period = max(0.5, min(60.0, self.turn.ttl / 10))
            self._refresh = asyncio.get_running_loop().call_later(period, self._refresh_due)

    def _refresh_due(self) -> None:
        self._refresh = None
        now = self.wall_clock()
        for socket in list(self.sockets):
            socket.session.refresh_ice_servers(now)
        if self.sockets:
            self._schedule_refresh()

    def close(self) -> None:
        """Stop the refresh timer (the process calls this at shutdown)."""
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, object]:
        stats = self.hub.stats()
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(self.clock() - self.started, 3),
            "ready": self.ready,
            "connections": self.connections,
            "tasks": len(asyncio.all_tasks()),
            "rooms": stats.rooms,
            "peers": stats.peers,
        }

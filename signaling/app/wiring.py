"""The one module that wires the signaling domain (sessions and their driver, the room backends) to the WebSocket
transport and HTTP routes.

The transport knows nothing of rooms and the domain nothing of sockets; this module is where a WebSocket
connection becomes a PeerSink and its text messages become Session input, and where a close becomes the client's
intent (it left on purpose, or the connection dropped). It also owns what is decided per connection or per
request rather than per message: who the client is (behind a trusted proxy), whether its browser origin may
connect, its per-address limits, and the 1003/1008 closes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from signaling import __version__
from signaling.cluster.node import ClusterNode
from signaling.protocol.facts import END_SESSION_CLOSE_CODE, REMOVED_CLOSE_CODE, TAKEN_OVER_CLOSE_CODE
from signaling.protocol.models import IceServer
from signaling.rooms.auth import AuthThrottle, JoinAuthorizer, RoomTokens
from signaling.rooms.backends import Backends, in_memory
from signaling.rooms.driver import SessionDriver, run_inline
from signaling.rooms.events import InMemoryOutbox
from signaling.rooms.ice import IceServerList, TurnCredentials
from signaling.rooms.limits import JoinDeadline, JoinDeadlines
from signaling.rooms.session import Session, SessionCounters
from signaling.ws.aio.batch import WriteBatch
from signaling.ws.aio.server import Later, ServerConnection, Upgrade, WebSocketServer
from signaling.ws.aio.stats import TransportStats
from signaling.ws.exceptions import ConnectionClosed
from signaling.ws.frames import CloseCode
from signaling.ws.handshake import is_upgrade_request
from signaling.ws.http11 import Request, Response

from .address_limits import AddressLimits
from .addresses import ClientAddresses, parse_networks
from .api import API_PREFIX, ServerApi
from .metrics import Metrics
from .origins import OriginPolicy
from .peerjs import PeerJS
from .routes import StaticFiles, http_response, not_found, refused
from .settings import Settings
from .sockets import ProtocolSocket
from .webhooks import WebhookSender
from .whip import Endpoints
from .ywebrtc import YWebrtcEndpoint

__all__ = ["SessionSocket", "SignalingApp"]

log = structlog.get_logger("signaling")

#: Why clients are closed (1001) when the server stops: they may resume on another node, or here after a restart.
DRAINING = "server draining: reconnect to continue"
#: Why clients are closed (1011) when the cluster's Redis is lost: 1013 (Try Again Later) would say it better, but
#: it is a later IANA registration that RFC 6455 endpoints (and the transport here) treat as invalid.
CLUSTER_LOST = "the room service is unavailable: reconnect in a moment"
#: Seconds a drain waits for the session steps still running (joins, ends of sessions) before it goes on.
STEPS_TIMEOUT = 5.0
#: Seconds a drain gives the webhooks still waiting in a single process's outbox (in a cluster they wait in Redis).
WEBHOOK_FLUSH = 5.0


def batched(handle: Callable[[str], None], batch: WriteBatch) -> Callable[[str], None]:
    """``handle`` inside the transport's write batch: what it sends flushes once per connection, at its end."""

    def run(payload: str) -> None:
        batch.open()
        try:
            handle(payload)
        finally:
            batch.close()

    return run


class SessionSocket(ProtocolSocket):
    """A WebSocket carrying one signaling session: the transport's handler, the session's sink, and the connection
    its driver holds and fails."""

    __slots__ = ("driver", "join_deadline")

    def __init__(self, app: SignalingApp, client: str, ws: ServerConnection) -> None:
        super().__init__(app, client, ws)
        settings = app.settings
        logger = log.bind(conn=ws.id, client=client)
        authorize = app.authorizer.for_client(client) if app.authorizer is not None else None
        session = Session(
            app.backends,
            self,
            ice_servers=app.ice_servers,
            logger=logger,
            authorize=authorize,
            clock=app.wall_clock,
            counters=app.counters,
            resume_grace=settings.resume_grace,
            address=client,
            budget=self,
        )
        self.driver = SessionDriver(session, self, app.later if app.backends.waits else None)
        self.join_deadline = app.connected(self)
        logger.info("connected")

    @property
    def session(self) -> Session:
        return self.driver.session

    # PeerSink (and ``deliver`` above)
    def taken_over(self) -> None:
        self.session.moved()
        self.ws.close(TAKEN_OVER_CLOSE_CODE, "session resumed on another connection")

    def removed(self) -> None:
        self.session.moved()  # the peer has left its room already: nothing for the session to end
        self.ws.close(REMOVED_CLOSE_CODE, "removed")

    # WebSocketHandler
    def on_text(self, text: str) -> None:
        app = self._app
        now = app.clock()
        if not self._limit.admit(len(text), now):
            self.refuse(text, now, app.counters.errors, peer=self.session.peer)
            return
        app.messages += 1
        self.driver.feed(text)

    def on_binary(self, data: bytes) -> None:
        # The protocol is JSON text only (protocol-v1: "A binary message closes the connection with 1003").
        self.ws.close(CloseCode.UNSUPPORTED_DATA, "binary messages are not supported; send JSON text")

    def on_close(self, closed: ConnectionClosed) -> None:
        self._app.disconnected(self)
        # The client left on purpose only with a close it started itself with the end-session code: an echo of a
        # close the server started (a drain's 1001 answered with 1000, as aiohttp does) is a drop like any other.
        self.driver.end(left=closed.by_peer and closed.code == END_SESSION_CLOSE_CODE)
        log.info("disconnected", conn=self.ws.id, client=self._client, code=closed.code, reason=closed.reason)

    def join_overdue(self) -> None:
        """The join deadline passed: close the connection unless it joined (1008)."""
        if not self.session.joined and not self.session.closed and self.ws.is_open:
            log.info("join_timeout", conn=self.ws.id, client=self._client)
            self.ws.close(CloseCode.POLICY_VIOLATION, "no join within the join timeout")


class SignalingApp:
    """Routes requests: the signaling WebSocket on ``settings.path``, plain HTTP for everything else."""

    def __init__(
        self,
        settings: Settings,
        backends: Backends | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        #: Seconds for rates and deadlines; ``wall_clock`` for what others check against the date (token and
        #: TURN credential expiry).
        self.clock = clock
        self.wall_clock = wall_clock
        #: The Redis cluster this process is a node of (``settings.redis_url``), if any.
        self.cluster: ClusterNode | None = None
        #: The room layer every session shares: in memory, or the cluster's on Redis.
        self.backends = backends if backends is not None else self._backends(settings)
        self._tasks: set[asyncio.Task[object]] = set()
        self._grace_timer: asyncio.TimerHandle | None = None
        self._sweep: asyncio.Task[object] | None = None
        #: Connections that must join a room in time, checked by one timer (``_check_joins``) while any wait.
        self.join_deadlines: JoinDeadlines[SessionSocket] = JoinDeadlines(settings.join_timeout)
        self._join_timer: asyncio.TimerHandle | None = None
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
        #: The webhooks to the application's backend (``settings.webhook_urls``), if on; started by ``start``.
        self.webhooks: WebhookSender | None = None
        if settings.webhook_secret is not None and self.backends.outbox is not None:
            self.webhooks = WebhookSender(
                settings.webhook_urls,
                settings.webhook_secret.get_secret_value(),
                self.backends.outbox,
                retry_for=settings.webhook_retry_for,
                clock=clock,
                wall_clock=wall_clock,
            )
        #: The server API for the application's backend (``settings.api_key``), if on.
        self.api: ServerApi | None = None
        if settings.api_key is not None:
            self.api = ServerApi(
                settings.api_key.get_secret_value(),
                AuthThrottle(settings.auth_max_failures, settings.auth_failure_window),
                self.backends,
                clock,
            )
        self.addresses = ClientAddresses(parse_networks(settings.trusted_proxies), settings.proxy_header)
        self.origins = OriginPolicy(settings.allowed_origins)
        self.limits = AddressLimits(
            settings.max_connections_per_ip,
            settings.connection_rate_per_ip,
            settings.connection_burst_per_ip,
            exempt=self.addresses.is_trusted,
        )
        self.static = StaticFiles(settings.web_root) if settings.web_root.is_dir() else None
        self.started = clock()
        #: Whether the server listens (the process sets it); /readyz also wants ``accepting``.
        self.ready = False
        self.draining = False
        self.sockets: set[SessionSocket] = set()
        self.connections = 0
        self.messages = 0
        self.rate_limited = 0
        self.counters = SessionCounters()
        #: Requests this app refused before they became WebSockets, by reason (the transport counts its own).
        self.rejections: Counter[str] = Counter()
        #: The transport server's stats, for /metrics (``use_transport``).
        self.transport_stats: TransportStats | None = None
        self.metrics = Metrics(self)
        #: WHIP and WHEP (``/whip/{room}``, ``/whep/{room}``): sessions of one HTTP request as peers of a room.
        self.whip = Endpoints(self)
        self._refresh: asyncio.TimerHandle | None = None
        #: y-webrtc's signaling protocol on ``settings.ywebrtc_path`` (app/ywebrtc.py).
        self.ywebrtc = YWebrtcEndpoint(self)

        #: The PeerJS endpoint (``settings.peerjs``): PeerJS apps on the same room layer.
        self.peerjs = PeerJS(self) if settings.peerjs else None

    def _backends(self, settings: Settings) -> Backends:
        limits: dict[str, Any] = {
            "max_peers_per_room": settings.room_max_peers,
            "max_rooms": settings.max_rooms,
            "max_ghosts_per_address": settings.max_ghosts_per_ip,
            "max_ghosts": settings.max_ghosts,
            "kept_count": settings.resume_buffer,
            "kept_bytes": settings.resume_buffer_bytes,
        }
        webhooks = bool(settings.webhook_urls)
        if settings.redis_url is None:
            outbox = InMemoryOutbox(settings.webhook_queue, self.wall_clock) if webhooks else None
            return in_memory(**limits, outbox=outbox)
        self.cluster = ClusterNode(
            settings.redis_url.get_secret_value(),
            **limits,
            grace=settings.resume_grace,
            prefix=settings.redis_prefix,
            node_ttl=settings.node_ttl,
            on_lost=self._cluster_lost,
            on_restored=lambda: log.info("accepting_again"),
            clock=self.wall_clock,
            webhook_queue=settings.webhook_queue if webhooks else None,
        )
        return self.cluster.backends

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Join the cluster, if any (or keep trying: until then the server is not ready); send webhooks."""
        if self.cluster is not None:
            await self.cluster.start()
            self._schedule_grace_sweep()  # it also ends the sessions of nodes that died
        if self.webhooks is not None:  # after the link, so a cluster's sender looks at once
            self.webhooks.start()

    @property
    def accepting(self) -> bool:
        """Whether new clients are let in: not while draining, nor while the cluster's Redis is lost."""
        return not self.draining and (self.cluster is None or self.cluster.up)

    def _cluster_lost(self, reason: str) -> None:
        """The rooms can no longer be kept true across nodes: close every client; they come back when it works."""
        for socket in list(self.sockets):
            socket.ws.close(CloseCode.INTERNAL_ERROR, CLUSTER_LOST)
        self.ywebrtc.close_all(CloseCode.INTERNAL_ERROR, CLUSTER_LOST)
        self.later(self.whip.close())  # their rooms cannot be kept true either: the clients must POST again

        if self.peerjs is not None:
            self.peerjs.close_all(CloseCode.INTERNAL_ERROR, CLUSTER_LOST)

    async def shutdown(self, server: WebSocketServer) -> None:
        """Drain: /readyz turns 503 and new clients are refused, every client is closed with 1001 (a resumable
        one may resume on another node), the ends of their sessions are waited for, and the node leaves."""
        self.draining = True
        self.close()
        await server.close_connections(CloseCode.GOING_AWAY, DRAINING)
        await self.whip.close()
        await self.drain()
        if self.cluster is not None:
            await self.cluster.stop()
        if self.webhooks is not None:  # the sessions' last events first (in memory: they go with the process)
            await self.webhooks.stop(flush=WEBHOOK_FLUSH)

    def use_transport(self, server: WebSocketServer) -> None:
        """The process's transport server: its counts for /metrics, its write batch for texts from other nodes."""
        self.transport_stats = server.stats
        if self.cluster is not None:
            self.cluster.on_delivery = batched(self.cluster.router.on_delivery, server.batch)

    def later(self, step: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        """Run ``step`` as a task that shutdown waits for (``drain``); a failure is logged, not lost."""
        task = asyncio.get_running_loop().create_task(step)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("session_step_failed", exc_info=exc)

    async def drain(self) -> None:
        """Wait for the session steps still running (joins, ends of sessions), as shutdown does."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STEPS_TIMEOUT)

    @property
    def turn_credentials_issued(self) -> int:
        return self.turn.issued if self.turn is not None else 0

    # ------------------------------------------------------------------ requests

    def handle_request(self, request: Request, peer: tuple[str, int] | None) -> Response | Upgrade | Later:
        if self.peerjs is not None and self.peerjs.owns(request.path):
            return self.peerjs.handle(request, peer)
        if request.path.startswith(API_PREFIX):
            if self.api is None:
                return not_found(request)
            return self.api.handle(request, self.addresses.resolve(peer[0] if peer else None, request.headers))
        if request.path.startswith(("/whip/", "/whep/")):
            return self.whip.handle(request, peer)
        if not is_upgrade_request(request):
            return http_response(
                request,
                ws_path=self.settings.path,
                static=self.static,
                health=self.health,
                ready=lambda: self.ready and self.accepting,
                metrics=self.metrics.render,
            )
        if request.path != self.settings.path and request.path != self.ywebrtc.path:
            return not_found(request)
        if not self.accepting:
            self.rejections["unavailable"] += 1
            text = "this server is draining: connect to another" if self.draining else CLUSTER_LOST
            return refused(503, text, retry_after=1)
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
        if request.path == self.ywebrtc.path:
            return self.ywebrtc.upgrade(request, client)
        return Upgrade(lambda ws: SessionSocket(self, client, ws))

    # ------------------------------------------------------------------ sessions

    def connected(self, socket: SessionSocket) -> JoinDeadline[SessionSocket]:
        """A new signaling connection; its time to join (cancelled when it goes)."""
        self.connections += 1
        self.limits.opened(socket.client)
        self.sockets.add(socket)
        if self._join_timer is None:
            self._schedule_join_check()
        if self.turn is not None:
            self._schedule_refresh()
        if self.settings.resume_grace > 0 and self._grace_timer is None:
            self._schedule_grace_sweep()
        return self.join_deadlines.add(socket, self.clock())

    def _schedule_join_check(self) -> None:
        period = max(0.05, min(1.0, self.join_deadlines.timeout / 4))
        self._join_timer = asyncio.get_running_loop().call_later(period, self._check_joins)

    def _check_joins(self) -> None:
        """Close the connections that did not join in time (1008); checked while any is waiting."""
        self._join_timer = None
        for socket in self.join_deadlines.due(self.clock()):
            socket.join_overdue()
        if self.join_deadlines:
            self._schedule_join_check()

    def _schedule_grace_sweep(self) -> None:
        """Every second or so, end the sessions whose grace ran out (their peers get peer-left)."""
        grace = self.settings.resume_grace
        period = max(0.2, min(1.0, grace / 10)) if grace > 0 else 1.0
        self._grace_timer = asyncio.get_running_loop().call_later(period, self._sweep_graces)

    def _sweep_graces(self) -> None:
        if not self.backends.waits:
            run_inline(self.backends.end_expired(self.wall_clock()))
        elif self._sweep is None or self._sweep.done():  # never two at once when Redis is slow
            self._sweep = self.later(self.backends.end_expired(self.wall_clock()))
        self._schedule_grace_sweep()

    def disconnected(self, socket: SessionSocket) -> None:
        self.connections -= 1
        self.limits.closed(socket.client)
        self.sockets.discard(socket)
        socket.join_deadline.cancel()

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
        """Stop the timers (the process calls this at shutdown)."""
        for timer in (self._refresh, self._grace_timer, self._join_timer):
            if timer is not None:
                timer.cancel()
        self._refresh = self._grace_timer = self._join_timer = None
        self.ywebrtc.close()

        if self.peerjs is not None:
            self.peerjs.close()

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, object]:
        stats = self.backends.directory.stats()
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(self.clock() - self.started, 3),
            "ready": self.ready and self.accepting,
            "draining": self.draining,
            "connections": self.connections,
            "tasks": len(asyncio.all_tasks()),
            # With a cluster, rooms and peers are the cluster's (as of the last heartbeat: cluster.stats_age_s);
            # local_peers this node's.
            "rooms": stats.rooms,
            "peers": stats.peers,
            "local_peers": stats.local_peers,
            "cluster": self._cluster_health(stats.nodes),
            "webhooks": self.webhooks.health() if self.webhooks is not None else None,
        }

    def _cluster_health(self, nodes: int) -> dict[str, object] | None:
        cluster = self.cluster
        if cluster is None:
            return None
        age = cluster.stats_age()
        config = cluster.redis_config
        return {
            "node": cluster.node or None,
            "nodes": nodes,
            # How old the cluster's counts (rooms, peers, nodes) are: read at each heartbeat.
            "stats_age_s": None if age is None else round(age, 3),
            "redis": "up" if cluster.up else "down",
            "reason": cluster.down_reason,
            "backlog_bytes": cluster.backlog_bytes,
            "lagging": cluster.lagging,
            # The settings of Redis that put the cluster at risk (the log says what to set); null: unreadable.
            "redis_settings": [p.setting for p in config.problems] if config.checked else None,
        }

"""The one module that wires the signaling domain (sessions, hub) to the WebSocket transport and HTTP routes.

The transport knows nothing of rooms and the domain nothing of sockets; this module is where a WebSocket
connection becomes a PeerSink and its text messages become Session input. It also owns what is decided per
connection or per request rather than per message: who the client is (behind a trusted proxy), whether its
browser origin may connect, its per-address limits, the join deadline, and the 1003/1008 closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

from signaling import __version__
from signaling.cluster.bus import RedisBus
from signaling.cluster.directory import RedisDirectory
from signaling.cluster.node import ClusterNode
from signaling.protocol.models import IceServer
from signaling.rooms.auth import AddressGuard, AuthThrottle, JoinAuthorizer, RoomTokens
from signaling.rooms.bus import LocalBus, MessageBus
from signaling.rooms.directory import InMemoryDirectory, RoomDirectory
from signaling.rooms.ice import IceServerList, TurnCredentials
from signaling.rooms.ratelimit import MessageRateLimit
from signaling.rooms.session import Session, SessionCounters, Step, end_expired
from signaling.ws.aio.server import ServerConnection, Upgrade, WebSocketServer
from signaling.ws.aio.stats import TransportStats
from signaling.ws.exceptions import ConnectionClosed
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

T = TypeVar("T")

#: The close code of a connection whose session was resumed on another one (a takeover; docs/protocol.md).
TAKEN_OVER = 4001
#: Why clients are closed (1001) when the server stops: they may resume on another node, or here after a restart.
DRAINING = "server draining: reconnect to continue"
#: Why clients are closed (1011) when the cluster's Redis is lost: 1013 (Try Again Later) would say it better, but
#: it is a later IANA registration that RFC 6455 endpoints (and the transport here) treat as invalid.
CLUSTER_LOST = "the room service is unavailable: reconnect in a moment"


def run_inline(step: Coroutine[Any, Any, T]) -> T:
    """Run ``step`` to its end now: for backends that never wait (the in-memory ones), a join is as immediate as
    a relay and needs no task."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("a backend declared synchronous waited")


class SessionSocket:
    """A WebSocket carrying one signaling session: the transport's handler and the session's sink at once.

    What the session hands back to wait on (a join, a leave, the end of the connection) runs before the next
    message: inline when the backends never wait; otherwise as a task, while later messages of this connection
    wait in an inbox (and past ``INBOX_LIMIT`` of them, reading from the socket pauses).
    """

    __slots__ = ("_app", "_busy", "_client", "_deadline", "_inbox", "_limit", "session", "ws")

    #: Messages queued behind a join or leave in flight before reading from the socket pauses.
    INBOX_LIMIT = 64

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
            app.directory,
            app.bus,
            self,
            ice_servers=app.ice_servers,
            logger=logger,
            authorize=authorize,
            clock=app.wall_clock,
            counters=app.counters,
            resume_grace=settings.resume_grace,
            resume_throttle=app.resume_guard(client),
        )
        self._busy: asyncio.Task[None] | None = None
        self._inbox: collections.deque[str] = collections.deque()
        app.connected(self)
        # The join deadline: idle sockets that never join must not pile up.
        self._deadline: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            settings.join_timeout, self._join_deadline
        )
        logger.info("connected")

    # PeerSink
    def deliver(self, text: str) -> None:
        self.ws.send_text(text)

    def taken_over(self) -> None:
        self.session.moved()
        self.ws.close(TAKEN_OVER, "session resumed on another connection")

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
        if self._busy is not None:
            self._inbox.append(text)
            if len(self._inbox) == self.INBOX_LIMIT:
                self.ws.pause_reading()
            return
        step = self.session.handle_text(text)
        if step is not None:
            self._run(step)

    def _run(self, step: Step) -> None:
        if self._app.inline_steps:
            run_inline(step)
        else:
            self._busy = asyncio.get_running_loop().create_task(self._work(step))

    async def _work(self, step: Step) -> None:
        """Run ``step``, then the queued messages in order (more steps among them included)."""
        try:
            await step
            while self._inbox:
                next_step = self.session.handle_text(self._inbox.popleft())
                if next_step is not None:
                    await next_step
        except Exception:
            log.exception("session_step_failed", conn=self.ws.id, client=self._client)
            self.ws.fail(CloseCode.INTERNAL_ERROR, "internal server error")
        finally:
            self._busy = None
            self.ws.resume_reading()

    def on_binary(self, data: bytes) -> None:
        # The protocol is JSON text only (protocol-v1: "A binary message closes the connection with 1003").
        self.ws.close(CloseCode.UNSUPPORTED_DATA, "binary messages are not supported; send JSON text")

    def on_close(self, closed: ConnectionClosed) -> None:
        code, reason = closed.code, closed.reason
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._app.disconnected(self)
        self._inbox.clear()
        ending = self.session.close(code)
        if self._busy is not None:  # after the step in flight: a join must finish before its session ends
            self._app.later(self._after(self._busy, ending))
        elif self._app.inline_steps:
            run_inline(ending)
        else:
            self._app.later(ending)
        log.info("disconnected", conn=self.ws.id, client=self._client, code=code, reason=reason)

    @staticmethod
    async def _after(busy: asyncio.Task[None], step: Step) -> None:
        with contextlib.suppress(Exception):
            await busy
        await step

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
        directory: RoomDirectory | None = None,
        bus: MessageBus | None = None,
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
        if directory is None or bus is None:
            directory, bus = self._backends(settings)
        self.directory = directory
        self.bus = bus
        #: The in-memory backends never wait: joins and leaves then run inline, as immediately as a relay.
        self.inline_steps = isinstance(directory, InMemoryDirectory) and isinstance(bus, LocalBus)
        self.resume_throttle = AuthThrottle(settings.auth_max_failures, settings.auth_failure_window)
        self._tasks: set[asyncio.Task[object]] = set()
        self._grace_timer: asyncio.TimerHandle | None = None
        self._sweep: asyncio.Task[object] | None = None
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
        self._refresh: asyncio.TimerHandle | None = None

    def _backends(self, settings: Settings) -> tuple[RoomDirectory, MessageBus]:
        peers, rooms = settings.room_max_peers, settings.max_rooms
        kept, kept_bytes = settings.resume_buffer, settings.resume_buffer_bytes
        if settings.redis_url is None:
            return (
                InMemoryDirectory(max_peers_per_room=peers, max_rooms=rooms),
                LocalBus(kept_count=kept, kept_bytes=kept_bytes),
            )
        directory = RedisDirectory(max_peers_per_room=peers, max_rooms=rooms, grace=settings.resume_grace)
        bus = RedisBus(kept_count=kept, kept_bytes=kept_bytes)
        self.cluster = ClusterNode(
            settings.redis_url.get_secret_value(),
            directory,
            bus,
            prefix=settings.redis_prefix,
            node_ttl=settings.node_ttl,
            on_lost=self._cluster_lost,
            on_restored=lambda: log.info("accepting_again"),
            clock=self.wall_clock,
        )
        return directory, bus

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Join the cluster, if any (or keep trying: until then the server is not ready)."""
        if self.cluster is not None:
            await self.cluster.start()
            self._schedule_grace_sweep()  # it also ends the sessions of nodes that died

    @property
    def accepting(self) -> bool:
        """Whether new clients are let in: not while draining, nor while the cluster's Redis is lost."""
        return not self.draining and (self.cluster is None or self.cluster.up)

    def _cluster_lost(self, reason: str) -> None:
        """The rooms can no longer be kept true across nodes: close every client; they come back when it works."""
        for socket in list(self.sockets):
            socket.ws.close(CloseCode.INTERNAL_ERROR, CLUSTER_LOST)

    async def shutdown(self, server: WebSocketServer) -> None:
        """Drain: /readyz turns 503 and new clients are refused, every client is closed with 1001 (a resumable
        one may resume on another node), the ends of their sessions are waited for, and the node leaves."""
        self.draining = True
        self.close()
        await server.close_connections(CloseCode.GOING_AWAY, DRAINING)
        await self.drain()
        if self.cluster is not None:
            await self.cluster.stop()

    def use_transport(self, server: WebSocketServer) -> None:
        """The process's transport server: its counts for /metrics, its write batch for texts from other nodes."""
        self.transport_stats = server.stats
        self.bus.batching = server.batch

    def resume_guard(self, client: str) -> AddressGuard:
        """The resume-token throttle of one client address (bad tokens count like bad room tokens)."""
        return AddressGuard(self.resume_throttle, client, self.wall_clock)

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
            await asyncio.wait(list(self._tasks), timeout=5)

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
                ready=lambda: self.ready and self.accepting,
                metrics=self.metrics.render,
            )
        if request.path != self.settings.path:
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
        return Upgrade(lambda ws: SessionSocket(self, client, ws))

    # ------------------------------------------------------------------ sessions

    def connected(self, socket: SessionSocket) -> None:
        self.connections += 1
        self.limits.opened(socket.client)
        self.sockets.add(socket)
        if self.turn is not None:
            self._schedule_refresh()
        if self.settings.resume_grace > 0 and self._grace_timer is None:
            self._schedule_grace_sweep()

    def _schedule_grace_sweep(self) -> None:
        """Every second or so, end the sessions whose grace ran out (their peers get peer-left)."""
        grace = self.settings.resume_grace
        period = max(0.2, min(1.0, grace / 10)) if grace > 0 else 1.0
        self._grace_timer = asyncio.get_running_loop().call_later(period, self._sweep_graces)

    def _sweep_graces(self) -> None:
        if self.inline_steps:
            run_inline(end_expired(self.directory, self.bus, self.wall_clock()))
        elif self._sweep is None or self._sweep.done():  # never two at once when Redis is slow
            self._sweep = self.later(end_expired(self.directory, self.bus, self.wall_clock()))
        self._schedule_grace_sweep()

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
        """Stop the timers (the process calls this at shutdown)."""
        for timer in (self._refresh, self._grace_timer):
            if timer is not None:
                timer.cancel()
        self._refresh = self._grace_timer = None

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, object]:
        stats = self.directory.stats()
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(self.clock() - self.started, 3),
            "ready": self.ready and self.accepting,
            "draining": self.draining,
            "connections": self.connections,
            "tasks": len(asyncio.all_tasks()),
            # With a cluster, rooms and peers are the cluster's (as of the last heartbeat); local_peers this node's.
            "rooms": stats.rooms,
            "peers": stats.peers,
            "local_peers": stats.local_peers,
            "cluster": self._cluster_health(stats.nodes),
        }

    def _cluster_health(self, nodes: int) -> dict[str, object] | None:
        cluster = self.cluster
        if cluster is None:
            return None
        return {
            "node": cluster.node or None,
            "nodes": nodes,
            "redis": "up" if cluster.up else "down",
            "reason": cluster.down_reason,
        }

"""The y-webrtc endpoint's wiring: a WebSocket on ``settings.ywebrtc_path`` becomes a ``YWebrtcSession``.

The protocol and its mapping onto the room layer are in signaling/interop/ywebrtc.py; here is what is decided
per connection: the room token on its URL (``?token=``), checked once when it connects; its message rate, with
the native abuse policy (rooms/limits.py: ``rate-limited`` answers, then 1008); the driver that runs its steps in
order; and the close (its subscriptions end). The request checks (draining, Origin, per-address limits) are the
app's, made before the upgrade as for native clients. Metrics: ``signaling_ywebrtc_*`` on /metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import structlog
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from signaling.interop.ywebrtc import TokenCheck, TopicLimits, YWebrtcCounters, YWebrtcSession
from signaling.protocol.errors import SignalingError
from signaling.protocol.facts import REMOVED_CLOSE_CODE
from signaling.rooms.driver import SessionDriver
from signaling.rooms.limits import JoinDeadline, JoinDeadlines
from signaling.ws.aio.server import ServerConnection, Upgrade
from signaling.ws.exceptions import ConnectionClosed
from signaling.ws.frames import CloseCode
from signaling.ws.http11 import Request

from .settings import NONE
from .sockets import ProtocolSocket

if TYPE_CHECKING:
    from .wiring import SignalingApp

__all__ = ["YWebrtcEndpoint", "YWebrtcSocket"]

log = structlog.get_logger("signaling.ywebrtc")


class YWebrtcSocket(ProtocolSocket):
    """A WebSocket carrying y-webrtc signaling: the transport's handler, the sink of its subscriptions, and the
    connection its driver holds and fails."""

    __slots__ = ("_endpoint", "driver", "join_deadline")

    def __init__(self, endpoint: YWebrtcEndpoint, client: str, ws: ServerConnection, token: TokenCheck) -> None:
        app = endpoint.app
        super().__init__(app, client, ws)
        self._endpoint = endpoint
        session = YWebrtcSession(
            app.backends,
            self,
            limits=endpoint.limits,
            token=token,
            clock=app.wall_clock,
            budget=self,
            counters=endpoint.counters,
            logger=log.bind(conn=ws.id, client=client),
        )
        self.driver = SessionDriver(session, self, app.later if app.backends.waits else None)
        self.join_deadline = endpoint.connected(self)

    # PeerSink
    def taken_over(self) -> None:
        """Never: a subscription cannot be resumed elsewhere."""

    def removed(self) -> None:
        # The server API removed a subscriber (its member has left its topic's room): the connection goes, as a
        # native peer's does; the provider would resubscribe on its own if only the topic went.
        self.ws.close(REMOVED_CLOSE_CODE, "removed")

    # WebSocketHandler
    def on_text(self, text: str) -> None:
        app = self._app
        now = app.clock()
        if not self._limit.admit(len(text), now):
            self.refuse(text, now, self._endpoint.counters.errors)
            return
        app.messages += 1
        self.driver.feed(text)

    def on_binary(self, data: bytes) -> None:
        # The stock server parses binary messages as JSON too (ws hands it a Buffer either way).
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = "\ufffd"  # not JSON: answered bad-json, as a text would be
        self.on_text(text)

    def on_close(self, closed: ConnectionClosed) -> None:
        self._endpoint.disconnected(self)
        self.driver.end(left=True)
        log.info("disconnected", conn=self.ws.id, client=self._client, code=closed.code)

    def join_overdue(self) -> None:
        """The join deadline passed: a connection with no topic then holds a slot for nothing (1008)."""
        if not self.driver.session.topics and self.ws.is_open:
            log.info("join_timeout", conn=self.ws.id, client=self._client)
            self.ws.close(CloseCode.POLICY_VIOLATION, "no subscribe within the join timeout")


class YWebrtcEndpoint:
    """The y-webrtc endpoint of an app: its connections, limits, counts and metrics."""

    def __init__(self, app: SignalingApp) -> None:
        self.app = app
        settings = app.settings
        self.path: str | None = None if settings.ywebrtc_path.lower() == NONE else settings.ywebrtc_path
        self.limits = TopicLimits(
            settings.ywebrtc_max_topics, settings.ywebrtc_max_topic_length, settings.ywebrtc_max_subscribers
        )
        self.counters = YWebrtcCounters()
        self.sockets: set[YWebrtcSocket] = set()
        #: Connections that must subscribe within the native join timeout, checked by one timer while any wait.
        self.deadlines: JoinDeadlines[YWebrtcSocket] = JoinDeadlines(settings.join_timeout)
        self._timer: asyncio.TimerHandle | None = None
        app.metrics.registry.register(_Collector(self))

    def upgrade(self, request: Request, client: str) -> Upgrade:
        """The app let ``client`` in (draining, Origin, per-address limits): check its token, then upgrade."""
        token: TokenCheck = None
        authorizer = self.app.authorizer
        if authorizer is not None:
            values = parse_qs(request.query).get("token")
            try:
                token = authorizer.check(values[0] if values else None, None, client)
            except SignalingError as exc:
                token = exc  # answered at the first subscribe: the provider reconnects forever after a refusal
        return Upgrade(lambda ws: YWebrtcSocket(self, client, ws, token))

    def connected(self, socket: YWebrtcSocket) -> JoinDeadline[YWebrtcSocket]:
        """A new connection; its time to subscribe (cancelled when it goes)."""
        self.app.limits.opened(socket.client)
        self.sockets.add(socket)
        log.info("connected", conn=socket.ws.id, client=socket.client)
        if self._timer is None:
            self._schedule_check()
        return self.deadlines.add(socket, self.app.clock())

    def disconnected(self, socket: YWebrtcSocket) -> None:
        self.app.limits.closed(socket.client)
        self.sockets.discard(socket)
        socket.join_deadline.cancel()

    def _schedule_check(self) -> None:
        period = max(0.05, min(1.0, self.deadlines.timeout / 4))
        self._timer = asyncio.get_running_loop().call_later(period, self._check)

    def _check(self) -> None:
        self._timer = None
        for socket in self.deadlines.due(self.app.clock()):
            socket.join_overdue()
        if self.deadlines:
            self._schedule_check()

    def close(self) -> None:
        """Stop the timer (the app's ``close``, at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection (the cluster's Redis is lost: the subscriptions can no longer be kept true)."""
        for socket in list(self.sockets):
            socket.ws.close(code, reason)


class _Collector(Collector):
    def __init__(self, endpoint: YWebrtcEndpoint) -> None:
        self.endpoint = endpoint

    def collect(self) -> Iterator[Metric]:
        endpoint = self.endpoint
        counters = endpoint.counters
        yield GaugeMetricFamily(
            "signaling_ywebrtc_connections", "Open y-webrtc WebSocket connections.", value=len(endpoint.sockets)
        )
        yield GaugeMetricFamily(
            "signaling_ywebrtc_topics", "y-webrtc topics with a subscriber on this node.", value=len(counters.topics)
        )
        yield GaugeMetricFamily(
            "signaling_ywebrtc_subscribers", "y-webrtc subscriptions on this node.", value=counters.subscribers
        )
        yield CounterMetricFamily(
            "signaling_ywebrtc_publishes", "y-webrtc publish messages relayed from this node.", value=counters.publishes
        )
        yield CounterMetricFamily(
            "signaling_ywebrtc_deliveries",
            "Copies those publishes became: their subscribers, on every node.",
            value=counters.deliveries,
        )
        family = CounterMetricFamily(
            "signaling_ywebrtc_errors", "error answers to y-webrtc clients, by code.", labels=["code"]
        )
        for code, count in sorted(counters.errors.items()):
            family.add_metric([code], count)
        yield family

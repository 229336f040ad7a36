"""One server-side connection: an ``asyncio.BufferedProtocol`` on the shared ``Endpoint`` (endpoint.py).

What is the server's own: reads into the server's shared buffer, routing the request (``App.handle_request``),
write batching (batch.py), the frame budget, the periodic sweep's checks (``tick``), and flow control between
connections (below). No task per connection: an idle connection costs this object, its core and its transport,
nothing else. It uses only the core's public surface and the server's (``read_buffer``, ``batch``, ``reader``,
``config``, ``stats``, and the bookkeeping calls ``add``/``settled``/``upgraded``/``discard``).

Flow control works both ways. A peer that does not read its answers fills its send buffer past the high
watermark: reading from it pauses until it drains below the low one. And whoever writes to such a peer (a room
mate relaying to it) pauses too, until it drains: the server slows the sender rather than buffering for the
slow receiver. A receiver that stays over the watermark for ``slow_consumer_timeout`` seconds while others wait on
it, or whose backlog passes ``write_buffer_limit``, is a slow consumer and is closed with 1008.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import structlog

from signaling.token_bucket import TokenBucket

from ..connection import CONNECTING, OPEN, Connection, Side
from ..events import BadRequest, CloseReceived, Event, Failed, PongReceived, RequestReceived
from ..exceptions import HandshakeError, InvalidState
from ..frames import CloseCode
from ..http11 import Request, Response
from .endpoint import Endpoint
from .interface import Later, WebSocketHandler
from .stats import READ_SAMPLE

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["ServerConnection"]

log = structlog.get_logger("signaling.ws")

#: Frames charged to a connection's frame budget at once (at most its burst).
FRAMES_PER_CHARGE = 64


class ServerConnection(Endpoint, asyncio.BufferedProtocol):
    """One client connection. Also the handle the application sends through (``send_text``, ``close``...)."""

    __slots__ = (
        "_app_hold",
        "_batch",
        "_frames",
        "_frames_charge",
        "_frames_owed",
        "_frames_seen",
        "_later",
        "_server",
        "_waiters",
        "_waiting_on",
        "client_address",
        "last_message",
        "last_received",
        "message_started",
        "opened_at",
        "ping_sent_at",
        "received",
        "remote",
        "upgraded",
    )

    handler: WebSocketHandler | None

    def __init__(self, server: WebSocketServer) -> None:
        cfg = server.config
        conn = Connection(
            Side.SERVER,
            max_message_size=cfg.max_message_size,
            max_head_size=cfg.max_head_size,
            max_fragments=cfg.max_fragments,
            max_frames_per_read=int(cfg.frame_burst) if cfg.frame_rate else 1 << 62,
        )
        super().__init__(conn, server.loop, cfg.close_timeout)
        self._server = server
        self._batch = server.batch
        self.remote: tuple[Any, ...] | None = None
        #: The address logs name: the TCP peer's host, unless the application knows the real client (a reverse
        #: proxy's X-Forwarded-For) and sets it.
        self.client_address = "-"
        self.opened_at = 0.0
        #: Set by each read; the sweep folds it into last_received (keepalive pings go to connections silent for
        #: ping_interval), so that a read needs no clock.
        self.received = False
        self.last_received = 0.0
        #: When the sweep last saw ``active`` set (idle timeout).
        self.last_message = 0.0
        self.ping_sent_at = 0.0
        #: When the sweep first saw a message in progress (0: none is).
        self.message_started = 0.0
        self.upgraded = False
        self._app_hold = False
        #: Connections whose send buffer we wait on, and the connections that wait on ours (None: none).
        self._waiting_on: set[ServerConnection] | None = None
        self._waiters: set[ServerConnection] | None = None
        self._frames: TokenBucket | None = None
        #: Frames parsed but not yet charged to the budget, charged once they reach _frames_charge; and the core's
        #: streamed-frame count at the last read.
        self._frames_owed = 0
        self._frames_charge = 0
        self._frames_seen = 0
        #: The answer being prepared for a plain request (``Later``).
        self._later: asyncio.Future[Response] | None = None

    # ------------------------------------------------------------ asyncio.BufferedProtocol

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # Copied out at once: the next read, on any connection, reuses the buffer.
        self.data_received(self._server.read_buffer[:nbytes].tobytes())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport = transport
        server = self._server
        cfg = server.config
        transport.set_write_buffer_limits(high=cfg.write_buffer_high, low=cfg.write_buffer_low)
        self.remote = transport.get_extra_info("peername")
        if self.remote:
            self.client_address = str(self.remote[0])
        self.opened_at = self.last_received = self.last_message = self.loop.time()
        refusal = server.add(self)
        if refusal is not None:
            log.warning("connection_refused", conn=self.id, client=self.client_address, status=refusal.status)
            self.conn.reject(refusal)
            self.flush()

    def data_received(self, data: bytes) -> None:
        if self._quiet_timer is not None:
            self._linger()  # the peer is still sending: keep draining
            return
        server = self._server
        batch = self._batch
        conn = self.conn
        stats = server.stats
        self.received = True
        # The first relayed read is timed, then one in READ_SAMPLE: no clock reading for the others.
        started = self.loop.time() if stats.reads % READ_SAMPLE == 0 else None
        batch.open()
        server.reader = self
        try:
            events = conn.receive_data(data)
            if self._frames is not None:
                # This read's frames (events, plus fragments that made none), charged to the frame budget once
                # they add up to _frames_charge: a take (and a clock reading) per read would cost ~0.3 µs, more
                # than the rest of the read's overhead; the budget is overrun by less than _frames_charge.
                streamed = conn.frames_streamed
                owed = self._frames_owed + len(events) + streamed - self._frames_seen
                self._frames_seen = streamed
                if owed < self._frames_charge:
                    self._frames_owed = owed
                else:
                    self._frames_owed = 0
                    if not self._frames.take(owed, self.loop.time()):
                        self._frame_flood()
                        return
            self._handle_events(events)
        finally:
            relayed = batch.close()  # the flushes see who is writing: a writer to a slow peer is made to wait
            server.reader = None
        self.flush()  # what the core queued by itself: the 101, pongs, close answers
        if relayed:
            stats.reads += 1
            if started is not None:
                stats.read_seconds.observe(self.loop.time() - started, READ_SAMPLE)

    def _frame_flood(self) -> None:
        cfg = self._server.config
        log.warning("frame_flood", conn=self.id, client=self.client_address, rate=cfg.frame_rate)
        self.fail(CloseCode.POLICY_VIOLATION, f"over {cfg.frame_rate:g} frames/s (burst {cfg.frame_burst:g})")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._later is not None:
            self._later.cancel()
        super().connection_lost(exc)
        self._release_waits()
        server = self._server
        server.discard(self)
        closed = self.conn.close_exc
        if self.upgraded:
            server.stats.closes[closed.code] += 1
            server.stats.send_buffer_peaks.observe(self.peak_buffer)
        handler = self.handler
        if handler is not None:
            self.handler = None
            try:
                handler.on_close(closed)
            except Exception:
                log.exception("handler_error", conn=self.id, where="on_close")

    # ------------------------------------------------------------ flow control

    def pause_writing(self) -> None:
        # The peer reads slower than we write: stop reading its requests, and make writers to it wait.
        super().pause_writing()
        self._update_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._update_reading()
        waiters, self._waiters = self._waiters, None
        for writer in waiters or ():
            writer._stop_waiting_on(self)

    def _written_while_paused(self) -> None:
        writer = self._server.reader
        if writer is not None and writer is not self:
            writer._wait_on(self)  # it relays to us faster than our peer reads: slow it down

    def _backlogged(self, backlog: int) -> bool:
        super()._backlogged(backlog)
        if backlog > self._server.config.write_buffer_limit and not self.conn.close_transport:
            self._slow_consumer("send buffer limit exceeded")
            return True
        return False

    def _wait_on(self, target: ServerConnection) -> None:
        """Stop reading from this connection until ``target``'s send buffer drains (it relays to a slow peer)."""
        if self._waiting_on is None:
            self._waiting_on = set()
        self._waiting_on.add(target)
        if target._waiters is None:
            target._waiters = set()
        target._waiters.add(self)
        self._update_reading()

    def _stop_waiting_on(self, target: ServerConnection) -> None:
        if self._waiting_on is not None:
            self._waiting_on.discard(target)
            if not self._waiting_on:
                self._waiting_on = None
        self._update_reading()

    def _release_waits(self) -> None:
        for target in self._waiting_on or ():
            if target._waiters is not None:
                target._waiters.discard(self)
        self._waiting_on = None
        waiters, self._waiters = self._waiters, None
        for writer in waiters or ():
            writer._stop_waiting_on(self)

    def pause_reading(self) -> None:
        """The application holds reading (it has queued enough of this connection's messages)."""
        self._app_hold = True
        self._update_reading()

    def resume_reading(self) -> None:
        self._app_hold = False
        self._update_reading()

    def _update_reading(self) -> None:
        self._set_reading(bool(self.write_paused_at) or self._waiting_on is not None or self._app_hold)

    # ------------------------------------------------------------ events

    def _event(self, ev: Event) -> None:
        if isinstance(ev, RequestReceived):
            self._route(ev.request)
        elif isinstance(ev, PongReceived):
            self.ping_sent_at = 0.0
            super()._event(ev)
        elif isinstance(ev, CloseReceived):
            log.debug("close_received", conn=self.id, code=ev.code, reason=ev.reason)
        elif isinstance(ev, Failed):
            log.info("protocol_error", conn=self.id, client=self.client_address, code=ev.code, reason=ev.reason)
        elif isinstance(ev, BadRequest):
            log.info("bad_request", conn=self.id, client=self.client_address, status=ev.error.status)
            self._server.stats.rejections["bad_request"] += 1
            self._server.settled(self)

    def _route(self, request: Request) -> None:
        server = self._server
        try:
            self._answer(request)
        finally:
            server.settled(self)

    def _answer(self, request: Request) -> None:
        server = self._server
        try:
            decision = server.app.handle_request(request, self.remote)
        except Exception:
            log.exception("app_error", conn=self.id, where="handle_request")
            server.stats.rejections["internal"] += 1
            self.conn.reject(HandshakeError(500, "internal error"))
            return
        if isinstance(decision, Response):
            self._respond(decision)
            return
        if isinstance(decision, Later):
            self._later = asyncio.ensure_future(decision.response)
            self._later.add_done_callback(self._answer_later)
            return
        if server.full:
            server.stats.rejections["server_full"] += 1
            self.conn.reject(
                HandshakeError(503, "server is at its connection limit, try again later", [("Retry-After", "5")])
            )
            log.warning("connection_limit", conn=self.id, limit=server.config.max_connections)
            return
        try:
            self.conn.accept(request, decision.subprotocols, decision.extra_headers)
        except HandshakeError as exc:
            server.stats.rejections["bad_handshake"] += 1
            log.info("handshake_rejected", conn=self.id, client=self.client_address, status=exc.status)
            return
        self.upgraded = True
        server.upgraded(self)
        cfg = server.config
        if cfg.frame_rate:
            self._frames = TokenBucket(cfg.frame_rate, cfg.frame_burst, self.loop.time())
            self._frames_charge = min(FRAMES_PER_CHARGE, int(cfg.frame_burst))
        try:
            self.handler = decision.handler_factory(self)
        except Exception:
            self._handler_failed("handler_factory")
            return
        # Frames a client pipelined behind its request are parsed now.
        self._handle_events(self.conn.receive_data(b""))

    def _respond(self, response: Response) -> None:
        if "Connection" not in response.headers:
            response.headers.add("Connection", "close")
        self.conn.send_response(response)

    def _answer_later(self, done: asyncio.Future[Response]) -> None:
        """A ``Later`` answer is ready: sent, unless the client has gone meanwhile."""
        self._later = None
        if done.cancelled() or self.transport is None or self.conn.state is not CONNECTING:
            return
        error = done.exception()
        if error is not None:
            log.error("app_error", conn=self.id, where="handle_request", exc_info=error)
            self._server.stats.rejections["internal"] += 1
            self.conn.reject(HandshakeError(500, "internal error"))
        else:
            self._respond(done.result())
        self.flush()

    def _handler_failed(self, where: str) -> None:
        log.exception("handler_error", conn=self.id, client=self.client_address, where=where)
        self.fail(CloseCode.INTERNAL_ERROR, "internal server error")

    # ------------------------------------------------------------ sending (the application's API)

    @property
    def request(self) -> Request | None:
        return self.conn.request

    @property
    def is_open(self) -> bool:
        return self.conn.state is OPEN

    def send_text(self, text: str) -> None:
        """Queue a text message; silently dropped once the connection is closing (the peer is leaving)."""
        # _send inlined: this is the relay's hot path, once per message per recipient.
        try:
            self.conn.send_text(text)
        except InvalidState:
            return
        if not self.queued:  # queued: already in this read's batch (the usual case when a read carries many)
            self._written()

    def send_binary(self, data: bytes) -> None:
        self._send(self.conn.send_binary, data)

    def _send(self, send: Callable[[Any], None], payload: str | bytes) -> None:
        try:
            send(payload)
        except InvalidState:
            return
        self._written()

    def _written(self) -> None:
        # While a read is handled, the write waits for the batch: one write per connection per read.
        batch = self._batch
        if not batch.active:
            self.flush()
        elif not self.queued:
            self.queued = True
            batch.add(self)

    def _slow_consumer(self, why: str) -> None:
        """1008 for a peer that does not read: it must not grow our memory nor hold up the peers writing to it.
        Its close frame sits behind its own backlog, so it likely sees only the TCP connection drop."""
        transport = self.transport
        assert transport is not None
        log.info("slow_consumer", conn=self.id, client=self.client_address, buffered=transport.get_write_buffer_size())
        self._release_waits()
        self.conn.fail(CloseCode.POLICY_VIOLATION, f"slow consumer: {why}")
        transport.write(self.conn.data_to_send())
        self._end_transport(transport)

    def _close_timed_out(self) -> None:
        if self.transport is not None:
            log.info("close_timeout", conn=self.id, client=self.client_address)
        super()._close_timed_out()

    # ------------------------------------------------------------ periodic checks

    def tick(self, now: float) -> None:
        """The periodic sweep's visit: deadlines (handshake, unfinished message, slow consumer), idle timeout,
        keepalive ping and its timeout."""
        cfg = self._server.config
        conn = self.conn
        state = conn.state
        if state is CONNECTING:
            if now - self.opened_at > cfg.handshake_timeout and conn.request is None:
                log.info("handshake_timeout", conn=self.id, client=self.client_address)
                self._server.stats.rejections["timeout"] += 1
                conn.reject(HandshakeError(408, "request timeout"))
                self._server.settled(self)
                self.flush()
            return
        if state is not OPEN:
            return
        if conn.message_in_progress:
            if not self.message_started or self.active:  # a message finished since: time the next one
                self.message_started = now
            elif now - self.message_started > cfg.message_timeout:
                log.info("message_timeout", conn=self.id, client=self.client_address)
                self.fail(CloseCode.POLICY_VIOLATION, f"message not finished within {cfg.message_timeout:g} s")
                return
        else:
            self.message_started = 0.0
        paused_at = self.write_paused_at
        if paused_at and self._waiters and now - paused_at > cfg.slow_consumer_timeout:
            self._slow_consumer(f"did not read for {cfg.slow_consumer_timeout:g} s while others wrote to it")
            return
        if self.active:
            self.active = False
            self.last_message = now
        if self.received:
            self.received = False
            self.last_received = now
        # Idle means no message: pongs answered to our keepalive pings keep a connection alive, not busy.
        if cfg.idle_timeout and now - self.last_message > cfg.idle_timeout:
            log.info("idle_timeout", conn=self.id, client=self.client_address)
            self.close(CloseCode.GOING_AWAY, "idle timeout")
            return
        if cfg.ping_interval:
            if self.ping_sent_at:
                if now - self.ping_sent_at > cfg.ping_timeout:
                    log.info("keepalive_timeout", conn=self.id, client=self.client_address)
                    self.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            elif now - self.last_received >= cfg.ping_interval:
                self.ping_sent_at = now
                self._send(self.conn.send_ping, b"")  # no waiter: the sweep watches ping_sent_at

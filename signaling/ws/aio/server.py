"""The asyncio server: one ``asyncio.BufferedProtocol`` per connection, moving bytes between the socket and the core.

No task per connection: an idle connection costs its protocol object, its core and its transport, nothing
else. Timers are one periodic sweep per server (handshake deadline, keepalive pings, idle timeout) instead of a
timer handle per connection. Writes made while a read is being handled are coalesced: a relay that delivers to many
peers in one read flushes each peer's frames in one ``transport.write``.

Reads land in one buffer shared by the whole server (``get_buffer``/``buffer_updated``): the loop fills it and
``buffer_updated`` copies the bytes out before returning, so no connection owns a read buffer while idle, and the
stock loop no longer allocates a fresh 256 KiB ``bytes`` per read (glibc serves that with mmap, then mremap to
shrink it and munmap to free it: three syscalls and a page fault, about 12 us, on every read).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import structlog

from ..connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Side, State
from ..events import (
    BadRequest,
    BinaryMessage,
    CloseReceived,
    Failed,
    PongReceived,
    RequestReceived,
    TextMessage,
)
from ..exceptions import HandshakeError, InvalidState
from ..frames import CloseCode
from ..http11 import Request, Response
from .batch import WriteBatch

__all__ = [
    "App",
    "ServerConfig",
    "ServerConnection",
    "Upgrade",
    "WebSocketHandler",
    "WebSocketServer",
]

log = structlog.get_logger("signaling.ws")


class WebSocketHandler(Protocol):
    """What the application plugs into an accepted WebSocket. Called on the event loop, never concurrently."""

    def on_text(self, text: str) -> None: ...

    def on_binary(self, data: bytes) -> None: ...

    def on_close(self, code: int, reason: str) -> None:
        """Once, when the connection is gone (code 1006 when no close frame came)."""


@dataclass(slots=True)
class Upgrade:
    """The application's answer to a request it wants as a WebSocket."""

    handler_factory: Callable[[ServerConnection], WebSocketHandler]
    subprotocols: tuple[str, ...] = ()
    extra_headers: tuple[tuple[str, str], ...] = ()


class App(Protocol):
    """Routes each request: a plain HTTP response, or an Upgrade to WebSocket."""

    def handle_request(self, request: Request) -> Response | Upgrade: ...


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_head_size: int = 8192
    #: Seconds a client has to complete its request head (slowloris protection).
    handshake_timeout: float = 10.0
    #: Seconds between server pings on an idle-or-not connection; 0 disables keepalive.
    ping_interval: float = 20.0
    #: Seconds to wait for the pong before the connection is given up.
    ping_timeout: float = 20.0
    #: Seconds without any received message before closing; 0 disables.
    idle_timeout: float = 0.0
    #: Seconds to wait for the peer's close frame (or its EOF) after ours before aborting TCP.
    close_timeout: float = 5.0
    #: Concurrent connections; more are refused with 503 at the handshake. 0: no limit.
    max_connections: int = 0
    #: Outgoing buffer watermarks per connection (bytes): above high, reading from that peer pauses ...
    write_buffer_high: int = 256 * 1024
    write_buffer_low: int = 64 * 1024
    #: ... and above this hard limit the peer is a slow consumer, closed with 1008.
    write_buffer_limit: int = 4 * 1024 * 1024
    ssl: ssl_module.SSLContext | None = None
    backlog: int = 1024


_ids = itertools.count(1)
#: Seconds of silence from a TLS peer, after our last bytes, before the connection is closed.
LINGER_QUIET = 0.2


#: Bytes asked of the socket per read; asyncio's own transports read 256 KiB at a time too.
READ_BUFFER_SIZE = 256 * 1024


class ServerConnection(asyncio.BufferedProtocol):
    """One client connection. Also the handle the application sends through (``send_text``, ``close``...)."""

    __slots__ = (
        "_close_timer",
        "_ending",
        "_paused_reading",
        "_queued",
        "_quiet_timer",
        "_server",
        "active",
        "conn",
        "handler",
        "id",
        "last_message",
        "last_received",
        "opened_at",
        "ping_sent_at",
        "remote",
        "transport",
        "upgraded",
    )

    def __init__(self, server: WebSocketServer) -> None:
        self._server = server
        cfg = server.config
        self.conn = Connection(Side.SERVER, max_message_size=cfg.max_message_size, max_head_size=cfg.max_head_size)
        self.id = next(_ids)
        self.transport: asyncio.Transport | None = None
        self.handler: WebSocketHandler | None = None
        self.remote: tuple[Any, ...] | None = None
        self.opened_at = 0.0
        self.last_received = 0.0
        #: Set by each received message, folded into last_message by the sweep (no clock read per message).
        self.active = False
        self.last_message = 0.0
        self.ping_sent_at = 0.0
        self.upgraded = False
        self._queued = False  # in the server's write batch
        self._ending = False
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._paused_reading = False
        self._close_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ asyncio.BufferedProtocol

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # Copied out at once: the next read, on any connection, reuses the buffer.
        self.data_received(self._server.read_buffer[:nbytes].tobytes())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport = transport
        cfg = self._server.config
        transport.set_write_buffer_limits(high=cfg.write_buffer_high, low=cfg.write_buffer_low)
        self.remote = transport.get_extra_info("peername")
        self.opened_at = self.last_received = self.last_message = self._server.loop.time()
        self._server.add(self)

    def data_received(self, data: bytes) -> None:
        if self._quiet_timer is not None:
            self._linger()  # the peer is still sending: keep draining
            return
        batch = self._server.batch
        batch.open()
        try:
            self._handle_events(self.conn.receive_data(data))
        finally:
            batch.close()
        self.flush()  # what the core queued by itself: the 101, pongs, close answers

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
            self._quiet_timer = None
        self._server.discard(self)
        conn = self.conn
        conn.receive_eof()  # no-op when already closed
        handler = self.handler
        if handler is not None:
            self.handler = None
            exc_info = conn.close_exc
            try:
                handler.on_close(exc_info.code, exc_info.reason)
            except Exception:
                log.exception("handler_error", conn=self.id, where="on_close")

    def pause_writing(self) -> None:
        # The peer reads slower than we write: stop reading its requests until the buffer drains.
        if self.transport is not None and not self._paused_reading and not self._ending:
            self._paused_reading = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self._paused_reading:
            self._paused_reading = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    # ------------------------------------------------------------ events

    def _handle_events(self, events: list[Any]) -> None:
        # Dispatch on ``type(ev) is``: cheaper per message than isinstance, at the cost of untyped ``ev``.
        handler = self.handler
        for ev in events:
            cls = type(ev)
            if cls is TextMessage or cls is BinaryMessage:
                self.active = True
                if handler is not None:
                    try:
                        if cls is TextMessage:
                            handler.on_text(ev.data)
                        else:
                            handler.on_binary(ev.data)
                    except Exception:
                        self._handler_failed("on_text" if cls is TextMessage else "on_binary")
                        return
            elif cls is RequestReceived:
                self._route(ev.request)
                handler = self.handler
            elif cls is PongReceived:
                self.ping_sent_at = 0.0
            elif cls is CloseReceived:
                log.debug("close_received", conn=self.id, code=ev.code, reason=ev.reason)
            elif cls is Failed:
                log.info("protocol_error", conn=self.id, code=ev.code, reason=ev.reason)
            elif cls is BadRequest:
                error = ev.error
                log.info("bad_request", conn=self.id, status=error.status, reason=error.reason)
        if events:
            self.last_received = self._server.loop.time()

    def _route(self, request: Request) -> None:
        server = self._server
        try:
            decision = server.app.handle_request(request)
        except Exception:
            log.exception("app_error", conn=self.id, where="handle_request")
            self.conn.reject(HandshakeError(500, "internal error"))
            return
        if isinstance(decision, Response):
            if "Connection" not in decision.headers:
                decision.headers.add("Connection", "close")
            self.conn.send_response(decision)
            return
        if server.full:
            self.conn.reject(
                HandshakeError(503, "server is at its connection limit, try again later", [("Retry-After", "5")])
            )
            log.warning("connection_limit", conn=self.id, limit=server.config.max_connections)
            return
        try:
            self.conn.accept(request, decision.subprotocols, decision.extra_headers)
        except HandshakeError as exc:
            log.info("handshake_rejected", conn=self.id, status=exc.status, reason=exc.reason)
            return
        self.upgraded = True
        server.upgraded(self)
        try:
            self.handler = decision.handler_factory(self)
        except Exception:
            self._handler_failed("handler_factory")
            return
        # Frames a client pipelined behind its request are parsed now.
        self._handle_events(self.conn.receive_data(b""))

    def _handler_failed(self, where: str) -> None:
        log.exception("handler_error", conn=self.id, where=where)
        self.fail(CloseCode.INTERNAL_ERROR, "internal server error")

    # ------------------------------------------------------------ sending (the application's API)

    @property
    def request(self) -> Request | None:
        return self.conn.request

    @property
    def is_open(self) -> bool:
        return self.conn.state is State.OPEN

    def send_text(self, text: str) -> None:
        """Queue a text message; silently dropped once the connection is closing (the peer is leaving)."""
        self._send(self.conn.send_text, text)

    def send_binary(self, data: bytes) -> None:
        self._send(self.conn.send_binary, data)

    def ping(self, data: bytes = b"") -> None:
        self._send(self.conn.send_ping, data)

    def _send(self, send: Callable[[Any], None], payload: str | bytes) -> None:
        try:
            send(payload)
        except InvalidState:
            return
        self._written()

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the close handshake; the TCP connection is aborted if the peer does not answer in time."""
        try:
            self.conn.send_close(code, reason)
        except InvalidState:
            if self.transport is not None:
                self.transport.close()
            return
        self.flush()

    def fail(self, code: int, reason: str = "") -> None:
        """Close with ``code`` and drop TCP without waiting for the peer's answer."""
        self.conn.fail(code, reason)
        self.flush()

    def _written(self) -> None:
        batch = self._server.batch
        if not batch.active:
            self.flush()
        elif not self._queued:
            self._queued = True
            batch.add(self)

    def flush(self) -> None:
        """Write what the core has queued, then end TCP or arm the close timer as the core's state says."""
        self._queued = False
        transport = self.transport
        if transport is None:
            return
        conn = self.conn
        data = conn.data_to_send()
        if data:
            backlog = transport.get_write_buffer_size()  # what the peer has not read yet
            transport.write(data)
            if backlog > self._server.config.write_buffer_limit and not conn.close_transport:
                # 1008: a peer that stops reading must not grow our memory or stall others.
                log.info("slow_consumer", conn=self.id, buffered=transport.get_write_buffer_size())
                conn.fail(CloseCode.POLICY_VIOLATION, "slow consumer: send buffer limit exceeded")
                transport.write(conn.data_to_send())
                self._end_transport(transport)
                return
        if conn.close_transport:
            self._end_transport(transport)
        elif conn.close_expected:
            self._arm_close_timer()

    def _end_transport(self, transport: asyncio.Transport) -> None:
        """Close TCP the way HTTP servers do: send FIN after the last bytes, then read and drop until the peer's
        EOF (bounded by close_timeout). Closing at once while the peer's bytes sit unread (the rest of an
        oversize message, a request body) makes the kernel send RST, which destroys our close frame or error
        response before the peer reads it."""
        if self._ending or transport.is_closing():
            return
        self._ending = True
        self._arm_close_timer()
        if self._paused_reading:
            self._paused_reading = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            # TLS cannot half-close: keep reading until the peer has been quiet for a moment (it has read our
            # close frame and sent what it had), then close with nothing left unread.
            self._linger()

    def _linger(self) -> None:
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
        transport = self.transport
        if transport is not None:
            self._quiet_timer = self._server.loop.call_later(LINGER_QUIET, transport.close)

    def _arm_close_timer(self) -> None:
        """Bound every ending: a peer that neither answers nor reads is aborted after close_timeout."""
        if self._close_timer is None and self.transport is not None:
            self._close_timer = self._server.loop.call_later(self._server.config.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self.transport is not None:
            log.info("close_timeout", conn=self.id)
            self.transport.abort()

    # ------------------------------------------------------------ periodic checks

    def tick(self, now: float) -> None:
        """The periodic sweep's visit: handshake deadline, idle timeout, keepalive ping and its timeout."""
        cfg = self._server.config
        conn = self.conn
        state = conn.state
        if state is State.CONNECTING:
            if now - self.opened_at > cfg.handshake_timeout and conn.request is None:
                log.info("handshake_timeout", conn=self.id)
                self.conn.reject(HandshakeError(408, "request timeout"))
                self.flush()
            return
        if state is not State.OPEN:
            return
        if self.active:
            self.active = False
            self.last_message = now
        # Idle means no message: pongs answered to our keepalive pings keep a connection alive, not busy.
        if cfg.idle_timeout and now - self.last_message > cfg.idle_timeout:
            log.info("idle_timeout", conn=self.id)
            self.close(CloseCode.GOING_AWAY, "idle timeout")
            return
        if cfg.ping_interval:
            if self.ping_sent_at:
                if now - self.ping_sent_at > cfg.ping_timeout:
                    log.info("keepalive_timeout", conn=self.id)
                    self.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            elif now - max(self.last_received, self.opened_at) >= cfg.ping_interval:
                self.ping_sent_at = now
                self.ping()


class WebSocketServer:
    """Listens, owns the connections, runs the periodic sweep, and shuts down gracefully."""

    def __init__(self, app: App, config: ServerConfig | None = None) -> None:
        self.app = app
        self.config = config or ServerConfig()
        self.connections: set[ServerConnection] = set()
        #: Upgraded (WebSocket) connections among them: what max_connections limits.
        self.open_count = 0
        self.batch = WriteBatch()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        #: Shared by every connection: get_buffer() and buffer_updated() run back to back in one callback on the
        #: selector loop, uvloop and asyncio's SSL layer. (Windows' proactor loop reads into it asynchronously,
        #: so it would need one buffer per connection; this server does not run there.)
        self.read_buffer = memoryview(bytearray(READ_BUFFER_SIZE))
        self._all_closed: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop  # set by start()

    @property
    def sockets(self) -> list[Any]:
        return list(self._server.sockets) if self._server is not None else []

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        cfg = self.config
        self._server = await self.loop.create_server(
            lambda: ServerConnection(self),
            cfg.host,
            cfg.port,
            ssl=cfg.ssl,
            backlog=cfg.backlog,
            reuse_address=True,
        )
        self._schedule_sweep()

    def _sweep_period(self) -> float:
        cfg = self.config
        periods = [cfg.handshake_timeout]
        if cfg.ping_interval:
            periods += [cfg.ping_interval, cfg.ping_timeout]
        if cfg.idle_timeout:
            periods.append(cfg.idle_timeout)
        return max(0.02, min(periods) / 4)

    def _schedule_sweep(self) -> None:
        self._sweeper = self.loop.call_later(self._sweep_period(), self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for c in list(self.connections):
            try:
                c.tick(now)
            except Exception:
                log.exception("sweep_error", conn=c.id)
        self._schedule_sweep()

    @property
    def full(self) -> bool:
        """Whether a new WebSocket would pass ``max_connections`` (it gets 503 at the handshake)."""
        limit = self.config.max_connections
        return bool(limit) and self.open_count >= limit

    def add(self, c: ServerConnection) -> None:
        """A TCP connection was made."""
        self.connections.add(c)

    def upgraded(self, c: ServerConnection) -> None:
        """``c`` became a WebSocket: it counts against max_connections until it goes."""
        self.open_count += 1

    def discard(self, c: ServerConnection) -> None:
        """A connection is gone."""
        if c in self.connections:
            self.connections.discard(c)
            if c.upgraded:
                self.open_count -= 1
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        """Stop accepting, close every WebSocket with ``code``, wait (bounded) for the handshakes."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._all_closed = asyncio.Event()
        for c in list(self.connections):
            if c.conn.state is State.OPEN:
                c.close(code, reason)
            elif c.transport is not None:
                c.transport.close()
        if self.connections:
            try:
                await asyncio.wait_for(self._all_closed.wait(), self.config.close_timeout + 1.0)
            except TimeoutError:
                for c in list(self.connections):
                    if c.transport is not None:
                        c.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

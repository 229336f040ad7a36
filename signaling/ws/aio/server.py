"""The asyncio server: listens, owns the connections, runs the periodic sweep, and shuts down gracefully.

Each TCP connection is a ``ServerConnection`` (server_connection.py); applications plug in through
interface.py. Timers are one periodic sweep per server (handshake deadline, unfinished messages, slow consumers,
keepalive pings, idle timeout) instead of a timer handle per connection. Writes made while a read is being handled
are coalesced (batch.py): a relay that delivers to many peers in one read flushes each peer's frames in one
``transport.write``.

Reads land in one buffer shared by the whole server (``get_buffer``/``buffer_updated``): the loop fills it and
``buffer_updated`` copies the bytes out before returning, so no connection owns a read buffer while idle, and the
stock loop no longer allocates a fresh 256 KiB ``bytes`` per read (glibc serves that with mmap, then mremap to
shrink it and munmap to free it: three syscalls and a page fault, about 12 us, on every read).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from ..connection import OPEN
from ..exceptions import HandshakeError
from ..frames import CloseCode
from .batch import WriteBatch
from .interface import App, Later, ServerConfig, Upgrade, WebSocketHandler
from .server_connection import ServerConnection
from .stats import TransportStats

__all__ = [
    "READ_BUFFER_SIZE",
    "App",
    "Later",
    "ServerConfig",
    "ServerConnection",
    "Upgrade",
    "WebSocketHandler",
    "WebSocketServer",
]

log = structlog.get_logger("signaling.ws")

#: Bytes asked of the socket per read; asyncio's own transports read 256 KiB at a time too.
READ_BUFFER_SIZE = 256 * 1024


class WebSocketServer:
    """Listens, owns the connections, runs the periodic sweep, and shuts down gracefully."""

    def __init__(self, app: App, config: ServerConfig | None = None) -> None:
        self.app = app
        self.config = config or ServerConfig()
        self.connections: set[ServerConnection] = set()
        #: Upgraded (WebSocket) connections among them: what max_connections limits.
        self.open_count = 0
        self.batch = WriteBatch()
        #: The connection whose read is being handled (writers to a slow peer are slowed down through it).
        self.reader: ServerConnection | None = None
        self.stats = TransportStats()
        #: Connections per TCP peer address that have not finished their request yet (slowloris).
        self._pending: dict[ServerConnection, str] = {}
        self._pending_by_ip: dict[str, int] = {}
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

    def add(self, c: ServerConnection) -> HandshakeError | None:
        """A TCP connection was made; the error to answer it with when it is one too many."""
        self.connections.add(c)
        cfg = self.config
        if cfg.max_sockets and len(self.connections) > cfg.max_sockets:
            self.stats.rejections["too_many_sockets"] += 1
            return HandshakeError(503, "server is at its connection limit, try again later", [("Retry-After", "5")])
        address = c.client_address
        if cfg.max_handshakes_per_ip and not cfg.exempt(address):
            count = self._pending_by_ip.get(address, 0)
            if count >= cfg.max_handshakes_per_ip:
                self.stats.rejections["handshakes_per_ip"] += 1
                return HandshakeError(429, "too many unfinished requests from your address", [("Retry-After", "5")])
            self._pending_by_ip[address] = count + 1
            self._pending[c] = address
        return None

    def settled(self, c: ServerConnection) -> None:
        """``c`` finished its request (answered, upgraded or refused): it no longer counts as unfinished."""
        address = self._pending.pop(c, None)
        if address is not None:
            count = self._pending_by_ip[address] - 1
            if count:
                self._pending_by_ip[address] = count
            else:
                del self._pending_by_ip[address]

    def upgraded(self, c: ServerConnection) -> None:
        """``c`` became a WebSocket: it counts against max_connections until it goes."""
        self.open_count += 1
        self.stats.handshakes += 1

    def discard(self, c: ServerConnection) -> None:
        """A connection is gone."""
        self.settled(c)
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
        await self.close_connections(code, reason)
        if self._server is not None:
            await self._server.wait_closed()

    async def close_connections(self, code: int, reason: str) -> None:
        """Close every connection (WebSockets with ``code``), still listening; wait (bounded) for the handshakes.

        A draining server does this first: the application can still refuse newcomers with a reason.
        """
        self._all_closed = asyncio.Event()
        for c in list(self.connections):
            if c.conn.state is OPEN:
                c.close(code, reason)
            elif c.transport is not None:
                c.transport.close()
        if self.connections:
            try:
                await asyncio.wait_for(self._all_closed.wait(), self.config.close_wait)
            except TimeoutError:
                for c in list(self.connections):
                    if c.transport is not None:
                        c.transport.abort()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

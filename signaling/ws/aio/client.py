"""The asyncio WebSocket client, on the same sans-I/O core as the server.

``async with connect("ws://host:port/ws") as ws: await ws.send("hi"); print(await ws.recv())``

Received messages wait in a bounded queue: when the application stops reading, the client stops reading the
socket, so TCP flow control (not memory) absorbs a fast server.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_module
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import cast
from urllib.parse import urlsplit

from ..connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Side, State
from ..errors import ConnectionClosed, InvalidState
from ..events import (
    BinaryMessage,
    Failed,
    HandshakeComplete,
    HandshakeFailed,
    Pong,
    TextMessage,
)
from ..frames import CloseCode, Opcode
from ..handshake import ClientHandshake

__all__ = ["ClientConnection", "connect"]

_QUEUE_HIGH = 64
_QUEUE_LOW = 16


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, conn: Connection, handshake: ClientHandshake) -> None:
        self.conn = conn
        self.handshake = handshake
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[str | None] = self.loop.create_future()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.messages: collections.deque[str | bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.pongs: dict[bytes, asyncio.Future[None]] = {}
        self.write_paused = False
        self.read_paused = False
        self.close_timeout = 5.0
        self._close_timer: asyncio.TimerHandle | None = None
        #: Set when we failed the connection for a server's violation (our close code and reason).
        self.failed: tuple[int, str] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.conn.send_request(self.handshake)
        self.flush()

    def data_received(self, data: bytes) -> None:
        for ev in self.conn.receive_data(data):
            cls = type(ev)
            if cls is TextMessage or cls is BinaryMessage:
                self.messages.append(ev.data)  # type: ignore[union-attr]
            elif cls is HandshakeComplete:
                if not self.opened.done():
                    self.opened.set_result(ev.subprotocol)  # type: ignore[union-attr]
            elif cls is HandshakeFailed:
                if not self.opened.done():
                    self.opened.set_exception(ev.error)  # type: ignore[union-attr]
            elif cls is Pong:
                fut = self.pongs.pop(cast(Pong, ev).data, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif cls is Failed:
                self.failed = (cast(Failed, ev).code, cast(Failed, ev).reason)
        self.flush()
        self.wake()
        if len(self.messages) >= _QUEUE_HIGH and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self.conn.state is not State.CLOSED:
            self.conn.receive_eof()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
        for fut in self.pongs.values():
            if not fut.done():
                fut.set_exception(self.closed_error())
        self.pongs.clear()
        self.wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        data = self.conn.data_to_send()
        if data:
            transport.write(data)
        if self.conn.close_transport:
            transport.close()
        elif self.conn.close_expected and self._close_timer is None:
            # 7.1.1: the server should close TCP after the close handshake; don't wait forever for it.
            self._close_timer = self.loop.call_later(self.close_timeout, transport.abort)

    def closed_error(self) -> ConnectionClosed:
        conn = self.conn
        code, reason = conn.close_rcvd if conn.close_rcvd is not None else (CloseCode.ABNORMAL, "")
        sent = conn.close_sent[0] if conn.close_sent is not None else None
        if conn.close_rcvd is None and self.failed is not None:
            # We failed the connection ourselves (e.g. the server broke the protocol): report our code. A close
            # of ours that was never answered stays 1006 (RFC 6455 7.1.5: no close frame was received).
            code, reason = self.failed
        return ConnectionClosed(code, reason, sent_code=sent)


class ClientConnection:
    """An open client WebSocket: ``send``, ``recv``, ``async for``, ``ping``, ``close``."""

    def __init__(self, protocol: _ClientProtocol, subprotocol: str | None) -> None:
        self._p = protocol
        self.subprotocol = subprotocol

    @property
    def state(self) -> State:
        return self._p.conn.state

    @property
    def _closed(self) -> bool:
        # As recv() sees it: the close frame is in (TCP may still be open) or the connection is gone.
        return self._p.closed.done() or self._p.conn.state is State.CLOSED

    @property
    def close_code(self) -> int | None:
        """The peer's close code once closed (1006 without a close frame); None while open."""
        if not self._closed:
            return None
        return self._p.closed_error().code

    @property
    def close_reason(self) -> str | None:
        if not self._closed:
            return None
        return self._p.closed_error().reason

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for str, binary for bytes); waits while the socket's buffer is full."""
        p = self._p
        try:
            if isinstance(message, str):
                p.conn.send_text(message)
            else:
                p.conn.send_binary(message)
        except InvalidState:
            raise p.closed_error() from None
        p.flush()
        await self._drain()

    async def send_fragments(self, fragments: Sequence[str | bytes]) -> None:
        """One message split into frames as given (all str: text; all bytes: binary)."""
        if not fragments:
            raise ValueError("at least one fragment")
        text = isinstance(fragments[0], str)
        p = self._p
        try:
            for i, frag in enumerate(fragments):
                if isinstance(frag, str) != text:
                    raise TypeError("fragments must be all str or all bytes")
                data = frag.encode() if isinstance(frag, str) else frag
                opcode = Opcode.CONT if i else (Opcode.TEXT if text else Opcode.BINARY)
                p.conn.send_frame(opcode, data, fin=i == len(fragments) - 1)
        except InvalidState:
            raise p.closed_error() from None
        p.flush()
        await self._drain()

    async def _drain(self) -> None:
        p = self._p
        if p.write_paused and not p.closed.done():
            p.drain_waiter = p.loop.create_future()
            await p.drain_waiter

    async def recv(self) -> str | bytes:
        """The next message; raises ConnectionClosed once the connection is closed and the queue is empty."""
        p = self._p
        while not p.messages:
            if p.closed.done() or p.conn.state is State.CLOSED:
                raise p.closed_error()
            if p.waiter is None or p.waiter.done():
                p.waiter = p.loop.create_future()  # shared by concurrent recv() calls: all wake, one wins
            await p.waiter
        msg = p.messages.popleft()
        if p.read_paused and len(p.messages) <= _QUEUE_LOW and p.transport is not None:
            p.read_paused = False
            p.transport.resume_reading()
        return msg

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        """Messages until the connection closes; a normal closure (1000/1001) ends the loop quietly."""
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed as exc:
                if exc.code in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
                    return
                raise

    async def ping(self, data: bytes | None = None) -> asyncio.Future[None]:
        """Send a ping; the returned future completes when its pong arrives."""
        p = self._p
        payload = data if data is not None else str(id(object())).encode()[:16]
        fut: asyncio.Future[None] = p.loop.create_future()
        p.pongs[payload] = fut
        try:
            p.conn.send_ping(payload)
        except InvalidState:
            p.pongs.pop(payload, None)
            raise p.closed_error() from None
        p.flush()
        return fut

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close handshake, then wait (bounded) for the server to close TCP."""
        p = self._p
        if p.conn.state is State.OPEN:
            p.conn.send_close(code, reason)
            p.flush()
        try:
            await asyncio.wait_for(asyncio.shield(p.closed), p.close_timeout + 1.0)
        except TimeoutError:
            if p.transport is not None:
                p.transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._p.closed)

    async def __aenter__(self) -> ClientConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class connect:
    """Open a client connection to a ``ws://`` or ``wss://`` URL; ``await connect(url)`` works too."""

    def __init__(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | bool | None = None,
        subprotocols: Sequence[str] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
        origin: str | None = None,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"not a WebSocket URL: {url!r}")
        self.secure = parts.scheme == "wss"
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        default_port = self.port == (443 if self.secure else 80)
        host_header = self.host if ":" not in self.host else f"[{self.host}]"
        if not default_port:
            host_header += f":{self.port}"
        self.handshake = ClientHandshake(
            host_header, target, subprotocols=subprotocols, extra_headers=extra_headers, origin=origin
        )
        if self.secure:
            self.ssl: ssl_module.SSLContext | None = (
                ssl if isinstance(ssl, ssl_module.SSLContext) else ssl_module.create_default_context()
            )
        elif ssl:
            raise ValueError("ssl given for a ws:// URL")
        else:
            self.ssl = None
        self.max_message_size = max_message_size
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self._conn: ClientConnection | None = None

    async def _open(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        conn = Connection(Side.CLIENT, max_message_size=self.max_message_size)

        def factory() -> _ClientProtocol:
            p = _ClientProtocol(conn, self.handshake)
            p.close_timeout = self.close_timeout
            return p

        async def opening() -> ClientConnection:
            _, protocol = await loop.create_connection(
                factory, self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None
            )
            try:
                subprotocol = await protocol.opened
            except BaseException:  # refused, or open_timeout/cancellation: never leave the socket open
                if protocol.transport is not None:
                    protocol.transport.abort()
                raise
            return ClientConnection(protocol, subprotocol)

        return await asyncio.wait_for(opening(), self.open_timeout)

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._open().__await__()

    async def __aenter__(self) -> ClientConnection:
        self._conn = await self._open()
        return self._conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            await self._conn.close()

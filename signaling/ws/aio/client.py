"""The asyncio WebSocket client, on the same Endpoint (endpoint.py) and sans-I/O core as the server.

``async with connect("ws://host:port/ws") as ws: await ws.send("hi"); print(await ws.recv())``

Received messages wait in a bounded queue: when the application stops reading, the client stops reading the
socket, so TCP flow control (not memory) absorbs a fast server.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar, cast
from urllib.parse import urlsplit

from ..connection import CLOSED, DEFAULT_MAX_MESSAGE_SIZE, Connection, Side, State
from ..events import Event, HandshakeComplete, HandshakeFailed
from ..exceptions import ConnectionClosed, InvalidState
from ..frames import CloseCode, Opcode
from ..handshake import ClientHandshake
from .endpoint import Endpoint

__all__ = ["QUIET_CLOSE_CODES", "ClientConnection", "ClosesOnExit", "Opening", "connect", "until_closed"]

#: Close codes that end iteration quietly: the peer (or we) closed on purpose, nothing went wrong.
QUIET_CLOSE_CODES = (CloseCode.NORMAL, CloseCode.GOING_AWAY)

T = TypeVar("T")
C = TypeVar("C", bound="_Closable")


class _Closable(Protocol):
    async def close(self) -> Any: ...


async def until_closed(recv: Callable[[], Awaitable[T]]) -> AsyncIterator[T]:
    """Yield ``await recv()`` until the connection closes; a normal closure (1000/1001) ends quietly, any other
    close raises its ConnectionClosed."""
    while True:
        try:
            yield await recv()
        except ConnectionClosed as exc:
            if exc.code in QUIET_CLOSE_CODES:
                return
            raise


class ClosesOnExit:
    """``async with conn:`` closes ``conn`` at the end of the block, whatever happened in it."""

    async def close(self) -> Any:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Opening(Generic[C]):
    """An opening connection: ``async with opening as conn`` (closed on exit) or ``conn = await opening``."""

    def __init__(self, open_: Callable[[], Awaitable[C]]) -> None:
        self._open = open_
        self._conn: C | None = None

    def __await__(self) -> Generator[Any, None, C]:
        return self._open().__await__()

    async def __aenter__(self) -> C:
        self._conn = await self._open()
        return self._conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            await self._conn.close()


#: Received messages queued before the client stops reading the socket, and the level at which it reads again.
_QUEUE_HIGH = 64
_QUEUE_LOW = 16


class _Inbox(collections.deque[str | bytes]):
    """The client's handler: received messages wait here for recv() (deque.append itself, no Python frame)."""

    on_text = collections.deque.append
    on_binary = collections.deque.append


class _ClientProtocol(Endpoint, asyncio.Protocol):
    """The client's side of the shared Endpoint: the opening handshake, and a bounded queue of messages."""

    __slots__ = ("closed", "handshake", "messages", "opened", "waiter")

    def __init__(self, conn: Connection, handshake: ClientHandshake, close_timeout: float) -> None:
        super().__init__(conn, asyncio.get_running_loop(), close_timeout)
        self.handshake = handshake
        self.opened: asyncio.Future[str | None] = self.loop.create_future()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.messages = self.handler = _Inbox()
        #: Shared by concurrent recv() calls: all wake, one wins.
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.conn.send_request(self.handshake)
        self.flush()

    def data_received(self, data: bytes) -> None:
        if self._quiet_timer is not None:
            self._linger()  # the server is still sending: keep draining
            return
        self._handle_events(self.conn.receive_data(data))
        self.flush()
        self.wake()
        if len(self.messages) >= _QUEUE_HIGH:
            self._set_reading(True)

    def _event(self, ev: Event) -> None:
        if isinstance(ev, HandshakeComplete):
            if not self.opened.done():
                self.opened.set_result(ev.subprotocol)
        elif isinstance(ev, HandshakeFailed):
            if not self.opened.done():
                self.opened.set_exception(ev.error)
        else:
            super()._event(ev)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.wake()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class ClientConnection(ClosesOnExit):
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
        return self._p.closed.done() or self._p.conn.state is CLOSED

    @property
    def close_code(self) -> int | None:
        """Once closed: the peer's close code, or ours if we failed the connection, else 1006; None while open."""
        return self._p.conn.close_code if self._closed else None

    @property
    def close_reason(self) -> str | None:
        return self._p.conn.close_reason if self._closed else None

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for str, binary for bytes); waits while the socket's buffer is full.

        Raises:
            ConnectionClosed: the connection is closed, or was lost while waiting.
        """
        p = self._p
        try:
            if isinstance(message, str):
                p.conn.send_text(message)
            else:
                p.conn.send_binary(message)
        except InvalidState:
            raise p.conn.close_exc from None
        p.flush()
        await p.drain()

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
            raise p.conn.close_exc from None
        p.flush()
        await p.drain()

    async def recv(self) -> str | bytes:
        """The next message; raises ConnectionClosed once the connection is closed and the queue is empty."""
        p = self._p
        while not p.messages:
            if p.closed.done() or p.conn.state is CLOSED:
                raise p.conn.close_exc
            if p.waiter is None or p.waiter.done():
                p.waiter = p.loop.create_future()
            await p.waiter
        msg = p.messages.popleft()
        if len(p.messages) <= _QUEUE_LOW:
            p._set_reading(False)
        return msg

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Messages until the connection closes; a normal closure (1000/1001) ends the loop quietly."""
        return until_closed(self.recv)

    async def ping(self, data: bytes | None = None) -> asyncio.Future[None]:
        """Send a ping; the returned future completes when its pong arrives (see ``Endpoint.ping``).

        Raises:
            ValueError: ``data`` is over 125 bytes, or a ping with it still waits for its pong.
            ConnectionClosed: the connection is closed.
        """
        return self._p.ping(data)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close handshake, then wait (bounded) for the server to close TCP."""
        p = self._p
        p.close(code, reason)
        try:
            await asyncio.wait_for(asyncio.shield(p.closed), p.close_timeout + 1.0)
        except TimeoutError:
            if p.transport is not None:
                p.transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._p.closed)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a close handshake: for a link found dead (no pong)."""
        if self._p.transport is not None:
            self._p.transport.abort()


def connect(
    url: str,
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    subprotocols: Sequence[str] = (),
    extra_headers: Sequence[tuple[str, str]] = (),
    origin: str | None = None,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
) -> Opening[ClientConnection]:
    """Open a client connection to a ``ws://`` or ``wss://`` URL: ``async with connect(url) as ws`` or
    ``ws = await connect(url)``. A malformed URL raises ValueError at once."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL: {url!r}")
    secure = parts.scheme == "wss"
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    default_port = 443 if secure else 80
    port = parts.port or default_port
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    host_header = host if ":" not in host else f"[{host}]"
    if port != default_port:
        host_header += f":{port}"
    if secure:
        context: ssl_module.SSLContext | None = (
            ssl if isinstance(ssl, ssl_module.SSLContext) else ssl_module.create_default_context()
        )
    elif ssl:
        raise ValueError("ssl given for a ws:// URL")
    else:
        context = None

    async def open_connection() -> ClientConnection:
        loop = asyncio.get_running_loop()
        handshake = ClientHandshake(
            host_header, target, subprotocols=subprotocols, extra_headers=extra_headers, origin=origin
        )
        conn = Connection(Side.CLIENT, max_message_size=max_message_size)
        protocol: _ClientProtocol | None = None
        try:
            async with asyncio.timeout(open_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _ClientProtocol(conn, handshake, close_timeout),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                )
                subprotocol = await protocol.opened
        except BaseException:  # refused, or open_timeout/cancellation: never leave the socket open
            if protocol is not None and protocol.transport is not None:
                protocol.transport.abort()
            raise
        return ClientConnection(protocol, subprotocol)

    return Opening(open_connection)

"""One end of a WebSocket on an asyncio transport: what the server's connections and the client share.

``Endpoint`` moves bytes between a transport and the sans-I/O core, and owns what does not depend on the side:

- **flush**: write ``data_to_send()``, then close TCP or arm the close timer as the core's ``close_transport`` and
  ``close_expected`` say. TCP ends the way HTTP servers end it: FIN after the last bytes, then read and drop until
  the peer's EOF (TLS, which cannot half-close: until it has been quiet for a moment), all bounded by
  ``close_timeout``;
- **event dispatch**: text and binary messages to the handler, pongs to their waiters, everything else to the
  side's ``_event``;
- **flow control**: senders wait for the transport to drain in a queue, all released when writing resumes, and
  with ``ConnectionClosed`` when the connection is lost; reading pauses and resumes through ``_set_reading``;
- **pings**: ``ping()`` returns a future that its pong (the same payload, 5.5.3) completes.

A subclass adds its side: its ``data_received`` (or ``buffer_updated``), its events (the request or the 101), what
it does when a flush leaves a backlog, and its end (``connection_lost``). Nothing here allocates per connection
until it is used: an idle server connection holds no waiter queue, no pong table, no timer.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import Any, Protocol

import structlog

from ..connection import OPEN, Connection
from ..events import BinaryMessage, Event, PongReceived, TextMessage
from ..exceptions import InvalidState
from ..frames import CloseCode

__all__ = ["LINGER_QUIET", "Endpoint", "MessageHandler"]

log = structlog.get_logger("signaling.ws")

_ids = itertools.count(1)
#: Seconds of silence from a TLS peer, after our last bytes, before the connection is closed.
LINGER_QUIET = 0.2


class MessageHandler(Protocol):
    """Where an endpoint hands the messages it receives (the server's application, the client's queue)."""

    def on_text(self, text: str) -> None: ...

    def on_binary(self, data: bytes) -> None: ...


class Endpoint(asyncio.BaseProtocol):
    """The part of an asyncio protocol that both sides share (see the module docstring)."""

    __slots__ = (
        "_close_timer",
        "_drain_waiters",
        "_ending",
        "_pings",
        "_pongs",
        "_quiet_timer",
        "active",
        "close_timeout",
        "conn",
        "handler",
        "id",
        "loop",
        "peak_buffer",
        "queued",
        "reading_paused",
        "transport",
        "write_paused_at",
    )

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop, close_timeout: float) -> None:
        self.conn = conn
        self.loop = loop
        #: Seconds an ending may take (the peer's close frame, its EOF) before TCP is aborted.
        self.close_timeout = close_timeout
        self.id = next(_ids)
        #: None until the connection is made, and again once it is lost.
        self.transport: asyncio.Transport | None = None
        self.handler: MessageHandler | None = None
        #: Set by each received message (the server's sweep reads and clears it: no clock read per message).
        self.active = False
        #: In a WriteBatch: flushed when the batch closes.
        self.queued = False
        self.reading_paused = False
        #: When the transport's buffer passed its high watermark (0: it is below).
        self.write_paused_at = 0.0
        #: The largest send backlog (bytes the peer had not read yet) seen by a flush.
        self.peak_buffer = 0
        self._ending = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._drain_waiters: collections.deque[asyncio.Future[None]] | None = None
        #: Pong waiters by ping payload, and the number of the last automatic payload.
        self._pongs: dict[bytes, asyncio.Future[None]] | None = None
        self._pings = 0

    # ------------------------------------------------------------ asyncio.BaseProtocol

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        """Timers off; whoever waits (to send, for a pong) gets the ConnectionClosed. Sides extend it."""
        for timer in (self._close_timer, self._quiet_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._quiet_timer = None
        self.transport = None
        self.conn.receive_eof()  # no-op when already closed
        closed = self.conn.close_exc
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_exception(closed)
        pongs, self._pongs = self._pongs, None
        for fut in (pongs or {}).values():
            if not fut.done():
                fut.set_exception(closed)

    # ------------------------------------------------------------ flow control

    def pause_writing(self) -> None:
        self.write_paused_at = self.loop.time()

    def resume_writing(self) -> None:
        self.write_paused_at = 0.0
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Wait while the transport's buffer is over its high watermark; any number of senders may wait.

        Raises:
            ConnectionClosed: the connection was lost, before or while waiting.
        """
        if self.transport is None:
            raise self.conn.close_exc
        if not self.write_paused_at:
            return
        if self._drain_waiters is None:
            self._drain_waiters = collections.deque()
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _set_reading(self, hold: bool) -> None:
        """Pause reading from the socket while ``hold``; an ending connection keeps reading (to see the EOF)."""
        transport = self.transport
        if transport is None or self._ending:
            return
        if hold and not self.reading_paused:
            self.reading_paused = True
            transport.pause_reading()
        elif not hold and self.reading_paused and not transport.is_closing():
            self.reading_paused = False
            transport.resume_reading()

    # ------------------------------------------------------------ events

    def _handle_events(self, events: list[Event]) -> None:
        """Messages to the handler, the rest to ``_event``. Messages after a close the handler made are dropped."""
        # Dispatch on ``type(ev) is``: cheaper per message than isinstance, at the cost of an untyped ``ev``.
        handler = self.handler
        conn = self.conn
        was_open = conn.state is OPEN
        messages = False
        ev: Any
        for ev in events:
            cls = type(ev)
            if cls is TextMessage or cls is BinaryMessage:
                messages = True
                if was_open and conn.state is not OPEN:
                    continue  # the handler closed it during this read: what followed is not for it
                if handler is not None:
                    try:
                        if cls is TextMessage:
                            handler.on_text(ev.data)
                        else:
                            handler.on_binary(ev.data)
                    except Exception:
                        self.active = True
                        self._handler_failed("on_text" if cls is TextMessage else "on_binary")
                        return
            else:
                self._event(ev)
                handler = self.handler  # a request may have brought one
        if messages:
            self.active = True

    def _event(self, ev: Event) -> None:
        """An event other than a message (rare: isinstance is fine). Here: pongs to their waiters; each side adds
        its own."""
        if isinstance(ev, PongReceived) and self._pongs:
            fut = self._pongs.pop(ev.data, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _handler_failed(self, where: str) -> None:
        log.exception("handler_error", conn=self.id, where=where)
        self.fail(CloseCode.INTERNAL_ERROR, "internal error")

    # ------------------------------------------------------------ sending

    def _written(self) -> None:
        """The core has queued bytes: send them (a side that batches writes waits for the batch)."""
        self.flush()

    def ping(self, data: bytes | None = None) -> asyncio.Future[None]:
        """Send a ping; the returned future completes when its pong arrives (ConnectionClosed if the connection
        ends first).

        Without ``data`` the payload is this connection's next free ping number, so concurrent pings never share
        one. A ``data`` whose pong is still awaited raises ValueError: a pong answers every ping with its payload,
        so two of them could not be told apart; so does one over 125 bytes (5.5), and neither leaves a waiter.
        """
        pongs = self._pongs
        if pongs is None:
            pongs = self._pongs = {}
        if data is None:
            self._pings += 1
            payload = str(self._pings).encode()
            while payload in pongs:
                self._pings += 1
                payload = str(self._pings).encode()
        elif data in pongs:
            raise ValueError(f"a ping with payload {data!r} is already waiting for its pong")
        else:
            payload = data
        try:
            self.conn.send_ping(payload)  # refuses a payload over 125 bytes before anything waits for its pong
        except InvalidState:
            raise self.conn.close_exc from None
        fut: asyncio.Future[None] = self.loop.create_future()
        pongs[payload] = fut
        self._written()
        return fut

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the close handshake; TCP is aborted if the peer does not end it within ``close_timeout``.
        Before the handshake is done there is nothing to close but TCP."""
        try:
            self.conn.send_close(code, reason)
        except InvalidState:
            if self.transport is not None:
                self.transport.close()
            return
        self.flush()

    def fail(self, code: int, reason: str = "") -> None:
        """Close with ``code`` and end TCP without waiting for the peer's answer (7.1.7)."""
        self.conn.fail(code, reason)
        self.flush()

    def flush(self) -> None:
        """Write what the core has queued, then end TCP or arm the close timer as the core's state says."""
        self.queued = False
        transport = self.transport
        if transport is None:
            return
        conn = self.conn
        data = conn.data_to_send()
        if data:
            backlog = transport.get_write_buffer_size()  # what the peer has not read yet
            transport.write(data)
            # The usual case is neither: a reading peer leaves nothing behind.
            if backlog and self._backlogged(backlog):
                return
            if self.write_paused_at:
                self._written_while_paused()
        if conn.state is OPEN:
            return
        if conn.close_transport:
            self._end_transport(transport)
        elif conn.close_expected:
            self._arm_close_timer()

    def _backlogged(self, backlog: int) -> bool:
        """A flush found ``backlog`` bytes still unread; True when that ended the connection."""
        if backlog > self.peak_buffer:
            self.peak_buffer = backlog
        return False

    def _written_while_paused(self) -> None:
        """A flush wrote while the transport's buffer is over its high watermark."""

    # ------------------------------------------------------------ ending

    def _end_transport(self, transport: asyncio.Transport) -> None:
        """Close TCP the way HTTP servers do: send FIN after the last bytes, then read and drop until the peer's
        EOF (bounded by close_timeout). Closing at once while the peer's bytes sit unread (the rest of an
        oversize message, a request body) makes the kernel send RST, which destroys our close frame or error
        response before the peer reads it."""
        if self._ending or transport.is_closing():
            return
        self._set_reading(False)
        self._ending = True
        self._arm_close_timer()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            # TLS cannot half-close: keep reading until the peer has been quiet for a moment (it has read our
            # close frame and sent what it had), then close with nothing left unread.
            self._linger()

    def _linger(self) -> None:
        """(Re)start the quiet timer of a TLS ending; called again by every read that comes meanwhile."""
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
        transport = self.transport
        if transport is not None:
            self._quiet_timer = self.loop.call_later(LINGER_QUIET, transport.close)

    def _arm_close_timer(self) -> None:
        """Bound every ending: a peer that neither answers nor reads is aborted after close_timeout."""
        if self._close_timer is None and self.transport is not None:
            self._close_timer = self.loop.call_later(self.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self.transport is not None:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.conn.state.name}>"

"""An asyncio client for the signaling protocol, on the project's own WebSocket transport.

::

    async with SignalingClient.connect("ws://127.0.0.1:8765/ws") as client:
        welcome = await client.join("demo", name="bot")
        async for msg in client:                 # typed server messages (signaling.protocol)
            if isinstance(msg, PeerJoined):
                await client.send_message({"hi": msg.peer}, to=msg.peer)

A background task reads the socket, parses each message with the protocol's pydantic models and either
completes the request waiting for it (``welcome``/``error`` carrying the ``ref`` of a ``join``, ``pong`` for
``ping``) or queues it for iteration. The queue is bounded: when the application stops reading, the reader
stops too, and TCP flow control (not memory) absorbs a fast server.

Session resume (docs/protocol.md): the client joins ``resumable`` and tracks the ``seq`` of room messages. When
the connection drops (not after :meth:`close`, nor after a close code in the protocol's ``FINAL_CLOSE_CODES``:
one that judged this client, or 4001, the session taken over), the reader reconnects, to the next URL when
given several, and re-joins with its resume token and ``last_seq``: the stream goes on with what was missed,
each message once, behind a ``Welcome`` that says whether the session was resumed (same peer id) or is a fresh
one (``resumed`` false, a new peer id). Sends made meanwhile wait for the new connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import pydantic_core
import structlog
from pydantic import BaseModel, ValidationError

from signaling.protocol.errors import Ref
from signaling.protocol.facts import END_SESSION_CLOSE_CODE, FINAL_CLOSE_CODES
from signaling.protocol.models import (
    ErrorMessage,
    IceCandidate,
    IceServer,
    IceServersUpdate,
    Pong,
    ServerMessage,
    Welcome,
)
from signaling.protocol.parse import parse_server_message
from signaling.ws.aio.client import ClientConnection, ClosesOnExit, Opening, until_closed
from signaling.ws.aio.client import connect as ws_connect
from signaling.ws.exceptions import ConnectionClosed, InvalidHandshake
from signaling.ws.frames import CloseCode

__all__ = ["SignalingClient", "SignalingClientError", "SignalingErrorReply", "UnexpectedMessage"]

log = structlog.get_logger("signaling.client")

#: Parsed messages waiting for the application before the reader stops reading the socket.
QUEUE_SIZE: Final = 256
#: Seconds between reconnection attempts at first, and at most (doubling in between).
RETRY_FIRST, RETRY_MAX = 0.05, 1.0

M = TypeVar("M", bound=BaseModel)


class SignalingClientError(Exception):
    """Base class of the client's own errors (the transport raises ConnectionClosed as itself)."""


class SignalingErrorReply(SignalingClientError):
    """The server answered a request of this client with ``error`` (e.g. ``room-full`` for a ``join``).

    ``code`` is the contract's error code as a string (``"room-full"``), ``message`` the server's sentence.
    """

    def __init__(self, code: str, message: str, ref: Ref | None = None) -> None:
        super().__init__(code, message, ref)
        self.code = code
        self.message = message
        self.ref = ref

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @classmethod
    def from_message(cls, msg: ErrorMessage) -> SignalingErrorReply:
        return cls(str(msg.code), msg.message, msg.ref)


class UnexpectedMessage(SignalingClientError):
    """``expect()`` got a message of another type than the one asked for."""

    def __init__(self, expected: type[BaseModel], got: ServerMessage) -> None:
        super().__init__(f"expected {expected.__name__}, got {type(got).__name__}: {got!r}")
        self.expected = expected
        self.got = got


class _End:
    """Queued after the last message: the reader has stopped, and ``error`` says why (ConnectionClosed...)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class SignalingClient(ClosesOnExit):
    """One signaling session over one WebSocket connection.

    Open it with :meth:`connect` (``async with`` closes it), then :meth:`join` a room. Incoming server
    messages are typed pydantic models from :mod:`signaling.protocol` (``Welcome``, ``PeerJoined``,
    ``RelayedOffer``...): iterate with ``async for``, or take one with :meth:`recv` / :meth:`expect`.
    Send helpers do not wait for anything: a relay the server refuses (``unknown-peer``...) comes back as
    an ``ErrorMessage`` in the stream, because the protocol acknowledges only ``join`` and ``ping``. Once the
    connection is closed, sends and requests raise ConnectionClosed (it carries the close code).
    """

    def __init__(
        self,
        ws: ClientConnection,
        *,
        reply_timeout: float | None = 10.0,
        urls: Sequence[str] = (),
        reconnect: Callable[[str], Awaitable[ClientConnection]] | None = None,
        resume: bool = True,
        resume_timeout: float = 30.0,
        keepalive: float | None = 20.0,
    ) -> None:
        self._ws = ws
        #: Seconds :meth:`join` and :meth:`ping` wait for their answer (None: no limit).
        self.reply_timeout = reply_timeout
        #: Whether joins are resumable and a dropped connection is resumed (needs ``reconnect``).
        self.resume = resume and reconnect is not None
        #: Seconds to try to get the session back after a drop before giving up (the server's grace is 30 s).
        self.resume_timeout = resume_timeout
        self._urls = list(urls)
        self._url_index = 0
        self._reconnect = reconnect
        self._keepalive = keepalive
        self._join: dict[str, Any] | None = None  # the last join, to resume it
        self._last_seq = 0
        self._closing = False
        #: Connections replaced after a drop (each a resume attempt that succeeded, resumed or not).
        self.reconnects = 0
        self._swapped = asyncio.Event()
        self._ids = itertools.count(1)
        self._pending: dict[Ref, asyncio.Future[Welcome]] = {}
        self._pings: collections.deque[asyncio.Future[None]] = collections.deque()
        self._queue: asyncio.Queue[ServerMessage | _End] = asyncio.Queue(QUEUE_SIZE)
        self._end: _End | None = None
        #: Messages from the server that did not match the protocol's models (skipped, counted).
        self.invalid_messages = 0
        #: Set by a successful :meth:`join`; cleared by :meth:`leave`.
        self.welcome: Welcome | None = None
        self._ice_update: list[IceServer] | None = None
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read(), name="signaling-client-reader")
        self._pinger = loop.create_task(self._keep_alive(), name="signaling-client-keepalive") if keepalive else None

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def connect(
        cls,
        url: str | Sequence[str],
        *,
        ssl: ssl_module.SSLContext | bool | None = None,
        open_timeout: float = 10.0,
        reply_timeout: float | None = 10.0,
        max_message_size: int | None = 1 << 20,
        resume: bool = True,
        resume_timeout: float = 30.0,
        keepalive: float | None = 20.0,
    ) -> Opening[SignalingClient]:
        """Connect to ``ws://host:port/ws`` (or ``wss://``; ``ssl`` may be an SSLContext for a private CA).

        ``url`` may be a list (several server nodes): the first that answers is used, and after a drop the
        client moves on to the next. Use as ``async with SignalingClient.connect(url) as client`` (closes on
        exit) or ``client = await SignalingClient.connect(url)`` (call :meth:`close` yourself).
        ``reply_timeout`` bounds the wait of :meth:`join` and :meth:`ping` for their answer; ``resume`` (see the
        module docstring) gets the session back after a drop, trying for ``resume_timeout`` seconds; every
        ``keepalive`` seconds a ping checks that the connection is alive (no pong within as long: a drop).
        """
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("no URL given")

        def open_ws(target: str) -> Awaitable[ClientConnection]:
            return ws_connect(target, ssl=ssl, open_timeout=open_timeout, max_message_size=max_message_size)

        async def open_client() -> SignalingClient:
            error: BaseException | None = None
            for index, target in enumerate(urls):
                try:
                    ws = await open_ws(target)
                except (OSError, InvalidHandshake, TimeoutError) as exc:
                    error = exc
                    continue
                client = cls(
                    ws,
                    reply_timeout=reply_timeout,
                    urls=urls,
                    reconnect=open_ws,
                    resume=resume,
                    resume_timeout=resume_timeout,
                    keepalive=keepalive,
                )
                client._url_index = index
                return client
            assert error is not None
            raise error

        return Opening(open_client)

    async def close(self) -> None:
        """Close the WebSocket (1000); pending requests fail with ConnectionClosed.

        Messages already queued stay readable with :meth:`recv`; those still in the socket are discarded. The
        reader is stopped first and the socket drained during the close handshake: a reader blocked on a full
        queue would otherwise leave the transport paused, unable to read the server's close frame.
        """
        self._closing = True
        if self._pinger is not None:
            self._pinger.cancel()
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        drain = asyncio.get_running_loop().create_task(self._discard_rest())
        try:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._ws.close(END_SESSION_CLOSE_CODE)  # the session ends: no grace, no resume
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        self._fail_pending(ConnectionClosed(END_SESSION_CLOSE_CODE, "closed by the client"))

    async def _discard_rest(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            while True:
                await self._ws.recv()

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by either side) and the reader has stopped."""
        return self._reader.done()

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1006 when the TCP connection dropped without a close frame)."""
        return self._ws.close_code

    @property
    def peer_id(self) -> str | None:
        """Our peer id in the current room, from ``welcome``."""
        return self.welcome.peer if self.welcome is not None else None

    @property
    def ice_servers(self) -> list[IceServer]:
        """The ICE servers to use now: the latest ``ice-servers`` update, else ``welcome.iceServers`` (empty
        before joining). TURN credentials expire; the server sends fresh ones before they do."""
        if self._ice_update is not None:
            return list(self._ice_update)
        return list(self.welcome.iceServers) if self.welcome is not None else []

    # ------------------------------------------------------------------ requests with a reply

    async def join(
        self,
        room: str,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        token: str | None = None,
        *,
        resumable: bool | None = None,
    ) -> Welcome:
        """Join ``room`` and return the ``welcome`` (our peer id, the peers already there, iceServers).

        ``resumable`` (by default the client's ``resume``) asks for a session that survives a drop.

        Raises:
            SignalingErrorReply: the server refused (``room-full``, ``unauthorized``, ``invalid-message``...).
            ConnectionClosed: the connection closed before the answer.
            TimeoutError: no answer within ``reply_timeout`` seconds.
        """
        msg: dict[str, Any] = {"type": "join", "room": room}
        for key, value in (("name", name), ("meta", meta), ("token", token)):
            if value is not None:
                msg[key] = value
        if self.resume if resumable is None else resumable:
            msg["resumable"] = True
        welcome = await self._request(msg)
        self._joined(welcome, {k: v for k, v in msg.items() if k != "id"})
        return welcome

    def _joined(self, welcome: Welcome, join: dict[str, Any]) -> None:
        self.welcome = welcome
        self._ice_update = None
        self._join = join if welcome.resume is not None else None
        if not welcome.resumed:
            self._last_seq = 0  # a new session numbers its messages from 1

    async def ping(self) -> None:
        """Send a protocol-level ``ping`` and wait (up to ``reply_timeout``) for its ``pong``.

        Unlike a WebSocket ping, this one goes through the server's message handling, so it checks the whole
        signaling path.
        """
        if self._end is not None:
            raise self._closed_error()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings.append(fut)
        try:
            await self.send_json({"type": "ping"})
            await asyncio.wait_for(fut, self.reply_timeout)
        finally:
            if fut in self._pings:
                self._pings.remove(fut)

    async def _request(self, msg: dict[str, Any]) -> Welcome:
        if self._end is not None:
            raise self._closed_error()
        ref = next(self._ids)
        msg["id"] = ref
        fut: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()
        self._pending[ref] = fut
        try:
            await self.send_json(msg)
            return await asyncio.wait_for(fut, self.reply_timeout)
        finally:
            self._pending.pop(ref, None)

    # ------------------------------------------------------------------ fire-and-forget sends

    async def send_json(self, message: Mapping[str, Any]) -> None:
        """Send any JSON object as is (no local validation: the server is the authority).

        While a dropped connection is being resumed, waits for the new one.
        """
        text = pydantic_core.to_json(message).decode()
        while True:
            ws = self._ws
            try:
                await ws.send(text)
                return
            except ConnectionClosed:
                if self._join is None or self._closing or self._end is not None:
                    raise
                # The reader is resuming (or is about to): send on the connection it gets, or fail with it.
                while self._ws is ws and self._end is None:
                    self._swapped.clear()
                    await self._swapped.wait()
                if self._end is not None:
                    raise self._closed_error() from None

    async def leave(self) -> None:
        """Leave the room (the others get ``peer-left``); the connection may :meth:`join` again."""
        self.welcome = None
        self._join = None  # the session ends: nothing to resume
        await self.send_json({"type": "leave"})

    async def send_offer(self, to: str, sdp: str) -> None:
        """Relay an SDP offer to peer ``to``."""
        await self.send_json({"type": "offer", "to": to, "sdp": sdp})

    async def send_answer(self, to: str, sdp: str) -> None:
        """Relay an SDP answer to peer ``to``."""
        await self.send_json({"type": "answer", "to": to, "sdp": sdp})

    async def send_candidate(self, to: str, candidate: IceCandidate | Mapping[str, Any] | None) -> None:
        """Relay an ICE candidate (an RTCIceCandidateInit dict) to ``to``; ``None`` means end of candidates."""
        payload = None if candidate is None else dict(candidate)
        await self.send_json({"type": "candidate", "to": to, "candidate": payload})

    async def send_message(self, data: Any, to: str | None = None) -> None:
        """Relay application data (any JSON value) to ``to``, or to every other peer of the room."""
        msg: dict[str, Any] = {"type": "message", "data": data}
        if to is not None:
            msg["to"] = to
        await self.send_json(msg)

    # ------------------------------------------------------------------ receiving

    async def recv(self) -> ServerMessage:
        """The next server message not consumed by a request (bound the wait with ``asyncio.timeout``).

        Raises:
            ConnectionClosed: the connection is closed and every queued message was read.
        """
        if self._end is not None and self._queue.empty():
            raise self._closed_error()
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later recv() sees the end too (the reader has stopped)
            raise self._closed_error()
        return item

    async def expect(self, kind: type[M]) -> M:
        """The next message, which must be a ``kind`` (e.g. ``PeerJoined``); for scripts and tests.

        Raises:
            SignalingErrorReply: the next message is an ``error`` (and ``kind`` is not ErrorMessage).
            UnexpectedMessage: it is of another type.
        """
        msg = await self.recv()
        if isinstance(msg, kind):
            return msg
        if isinstance(msg, ErrorMessage):
            raise SignalingErrorReply.from_message(msg)
        raise UnexpectedMessage(kind, msg)

    def __aiter__(self) -> AsyncIterator[ServerMessage]:
        """Messages until the connection closes; a normal close (1000/1001) ends the loop quietly."""
        return until_closed(self.recv)

    # ------------------------------------------------------------------ the reader task

    async def _read(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                try:
                    raw = await self._ws.recv()  # not ``async for``: its quiet end on 1000/1001 loses the code
                except ConnectionClosed as exc:
                    if not self._resumable(exc):
                        raise
                    await self._resume(exc)
                    continue
                try:
                    msg = parse_server_message(raw)
                except ValidationError as exc:
                    self.invalid_messages += 1
                    log.warning("invalid_server_message", error=str(exc).splitlines()[0])
                    continue
                seq = getattr(msg, "seq", None)
                if seq is not None:
                    if seq <= self._last_seq:
                        continue  # replayed by a resume, and already handled
                    self._last_seq = seq
                if isinstance(msg, IceServersUpdate):
                    self._ice_update = list(msg.iceServers)  # and queued too: a caller may apply it at once
                if not self._complete(msg):
                    await self._queue.put(msg)
        except ConnectionClosed as exc:
            error = exc
        except Exception as exc:  # a transport failure: end the stream with it rather than leave readers hanging
            error = exc
        finally:
            # Also on cancellation (close() with a full queue): recv() must not wait for a reader that is gone.
            if error is None:  # cancelled
                error = ConnectionClosed(END_SESSION_CLOSE_CODE, "closed by the client")
            self._end = _End(error)
            self._swapped.set()
            self._fail_pending(error)
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(self._end)  # when full, recv() finds self._end once it has drained it

    # ------------------------------------------------------------------ resume

    def _resumable(self, closed: ConnectionClosed) -> bool:
        return self.resume and self._join is not None and not self._closing and closed.code not in FINAL_CLOSE_CODES

    async def _resume(self, closed: ConnectionClosed) -> None:
        """Get the session back on a new connection (the next URL first), retrying for ``resume_timeout``.

        Raises:
            ConnectionClosed: ``closed``, when every attempt failed.
        """
        assert self._join is not None and self._reconnect is not None
        self._fail_pending(closed)  # the requests of the old connection have no answer coming
        log.info("signaling_resuming", code=closed.code, reason=closed.reason)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resume_timeout
        delay = RETRY_FIRST
        while True:
            self._url_index = (self._url_index + 1) % len(self._urls)
            try:
                ws = await self._reconnect(self._urls[self._url_index])
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                log.info("signaling_resume_failed", url=self._urls[self._url_index], error=str(exc))
            else:
                try:
                    welcome = await self._rejoin(ws)
                except (OSError, TimeoutError, ValueError, ConnectionClosed, SignalingClientError) as exc:
                    log.info("signaling_resume_failed", url=self._urls[self._url_index], error=str(exc))
                    with contextlib.suppress(ConnectionClosed, OSError):
                        await ws.close()
                else:
                    self._ws = ws
                    self.reconnects += 1
                    self._swapped.set()
                    await self._queue.put(welcome)  # the application learns of it: resumed, or a fresh session
                    return
            if loop.time() + delay > deadline:
                raise closed
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _rejoin(self, ws: ClientConnection) -> Welcome:
        """Join again on ``ws`` with the resume token; the answer is its first message."""
        assert self._join is not None and self.welcome is not None
        msg = {**self._join, "resume": self.welcome.resume, "last_seq": self._last_seq, "id": next(self._ids)}
        await ws.send(pydantic_core.to_json(msg).decode())
        async with asyncio.timeout(self.reply_timeout):
            reply = parse_server_message(await ws.recv())
        if isinstance(reply, ErrorMessage):
            raise SignalingErrorReply.from_message(reply)
        if not isinstance(reply, Welcome):
            raise SignalingClientError(f"expected welcome, got {reply!r}")
        self._joined(reply, self._join)
        log.info("signaling_resumed" if reply.resumed else "signaling_rejoined", peer=reply.peer)
        return reply

    async def _keep_alive(self) -> None:
        """Ping every ``keepalive`` seconds; a connection that answers none within as long is dropped (resumed
        if it can be): a half-open TCP connection would otherwise never end."""
        assert self._keepalive is not None
        while True:
            await asyncio.sleep(self._keepalive)
            ws = self._ws
            try:
                pong = await ws.ping()
                await asyncio.wait_for(pong, self._keepalive)
            except TimeoutError:
                log.info("signaling_keepalive_timeout")
                ws.abort()
            except ConnectionClosed:
                if self._end is not None:
                    return

    def _complete(self, msg: ServerMessage) -> bool:
        """Hand ``msg`` to the request waiting for it; False when it belongs to the stream."""
        if isinstance(msg, Welcome | ErrorMessage) and msg.ref is not None:
            fut = self._pending.pop(msg.ref, None)
            if fut is not None and not fut.done():
                if isinstance(msg, Welcome):
                    fut.set_result(msg)
                else:
                    fut.set_exception(SignalingErrorReply.from_message(msg))
                return True
        elif isinstance(msg, Pong):
            while self._pings:
                ping = self._pings.popleft()
                if not ping.done():
                    ping.set_result(None)
                    return True
        return False

    def _fail_pending(self, error: BaseException) -> None:
        futures: list[asyncio.Future[Any]] = [*self._pending.values(), *self._pings]
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()
        self._pings.clear()

    def _closed_error(self) -> ConnectionClosed:
        if self._end is not None and isinstance(self._end.error, ConnectionClosed):
            return self._end.error
        code = self._ws.close_code
        reason = self._ws.close_reason or ""
        return ConnectionClosed(code if code is not None else CloseCode.ABNORMAL, reason)

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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import ssl as ssl_module
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, TypeVar

import pydantic_core
import structlog
from pydantic import BaseModel, ValidationError

from signaling.protocol.errors import Ref
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
from signaling.ws.exceptions import ConnectionClosed
from signaling.ws.frames import CloseCode

__all__ = ["SignalingClient", "SignalingClientError", "SignalingErrorReply", "UnexpectedMessage"]

log = structlog.get_logger("signaling.client")

#: Parsed messages waiting for the application before the reader stops reading the socket.
QUEUE_SIZE: Final = 256

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

    def __init__(self, ws: ClientConnection, *, reply_timeout: float | None = 10.0) -> None:
        self._ws = ws
        #: Seconds :meth:`join` and :meth:`ping` wait for their answer (None: no limit).
        self.reply_timeout = reply_timeout
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
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="signaling-client-reader")

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        ssl: ssl_module.SSLContext | bool | None = None,
        open_timeout: float = 10.0,
        reply_timeout: float | None = 10.0,
        max_message_size: int | None = 1 << 20,
    ) -> Opening[SignalingClient]:
        """Connect to ``ws://host:port/ws`` (or ``wss://``; ``ssl`` may be an SSLContext for a private CA).

        Use as ``async with SignalingClient.connect(url) as client`` (closes on exit) or
        ``client = await SignalingClient.connect(url)`` (call :meth:`close` yourself). ``reply_timeout``
        bounds the wait of :meth:`join` and :meth:`ping` for their answer.
        """
        opening = ws_connect(url, ssl=ssl, open_timeout=open_timeout, max_message_size=max_message_size)

        async def open_client() -> SignalingClient:
            return cls(await opening, reply_timeout=reply_timeout)

        return Opening(open_client)

    async def close(self) -> None:
        """Close the WebSocket (1000); pending requests fail with ConnectionClosed.

        Messages already queued stay readable with :meth:`recv`; those still in the socket are discarded. The
        reader is stopped first and the socket drained during the close handshake: a reader blocked on a full
        queue would otherwise leave the transport paused, unable to read the server's close frame.
        """
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        drain = asyncio.get_running_loop().create_task(self._discard_rest())
        try:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._ws.close()
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        self._fail_pending(ConnectionClosed(CloseCode.NORMAL, "closed by the client"))

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
        resume: str | None = None,
    ) -> Welcome:
        """Join ``room`` and return the ``welcome`` (our peer id, the peers already there, iceServers).

        Raises:
            SignalingErrorReply: the server refused (``room-full``, ``unauthorized``, ``invalid-message``...).
            ConnectionClosed: the connection closed before the answer.
            TimeoutError: no answer within ``reply_timeout`` seconds.
        """
        msg: dict[str, Any] = {"type": "join", "room": room}
        for key, value in (("name", name), ("meta", meta), ("token", token), ("resume", resume)):
            if value is not None:
                msg[key] = value
        welcome = await self._request(msg)
        self.welcome = welcome
        self._ice_update = None
        return welcome

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
        """Send any JSON object as is (no local validation: the server is the authority)."""
        await self._ws.send(pydantic_core.to_json(message).decode())

    async def leave(self) -> None:
        """Leave the room (the others get ``peer-left``); the connection may :meth:`join` again."""
        self.welcome = None
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
                raw = await self._ws.recv()  # not ``async for``: its quiet end on 1000/1001 would lose the code
                try:
                    msg = parse_server_message(raw)
                except ValidationError as exc:
                    self.invalid_messages += 1
                    log.warning("invalid_server_message", error=str(exc).splitlines()[0])
                    continue
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
                error = ConnectionClosed(CloseCode.NORMAL, "closed by the client")
            self._end = _End(error)
            self._fail_pending(error)
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(self._end)  # when full, recv() finds self._end once it has drained it

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

"""A node's connections to Redis: one ordered stream of commands, and the subscription to its channels.

Every command this node sends goes through one outbox, in the order it was issued, on one connection: a relay
(not awaited) and a join or leave (awaited) issued after it are executed by Redis in that order, so what one peer
sends reaches every other peer in order, membership changes included. The writer sends what has queued as soon
as it can, without waiting for the replies to what it sent before (a second task reads them, in order): a
message's latency is one trip to Redis, not a trip plus the wait for the previous batch's replies. Texts for
one node that follow each other in the outbox travel as one PUBLISH (records joined by newlines), and texts for
resumable members as one call of ``signaling_deliver``: under load a write carries hundreds of messages, and
Redis and the receiving node handle one message for all of them. The subscription (the membership changes of every room,
and this node's own channel) is read by one task.

Any failure of a connection means the link is lost: it calls ``on_lost`` once and stops; the node then
closes its clients and builds a new link when Redis answers again (node.py). redis-py's own retries are off,
since a silent reconnect would lose what was published meanwhile. An error reply (Redis refused one command: out
of memory, say) fails that command only, as ``Unavailable`` too: every caller undoes what it did, whatever the cause.

Texts for resumable members (``keep``: numbered and kept by ``signaling_deliver``) are not lost with a link: those
whose reply had not come when it failed may or may not have run, so they are sent again on the next link
(``unconfirmed``, ``resend``), and Redis runs each of them once, by its place in this process's order of calls
(a counter that outlives links, checked against the last one Redis ran for this process).

Commands that change the shared state are fenced (``fenced``): they carry a deadline in Redis's own clock, the
moment after which this node no longer waits for them (it has failed the link by then), and Redis refuses them
after it. So a command stuck in Redis's input while Redis was paused cannot run behind the node's back once the
node has given up on it (and, say, rotate the resume token of a session its client is resuming elsewhere). The
link learns Redis's clock when it opens and again at each heartbeat (``sync_clock``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Final

import redis.asyncio as redis
import structlog
from redis.asyncio.connection import Connection
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .schema import LIBRARY, RECORD_SEPARATOR, Names

__all__ = ["Numbered", "RedisLink", "Unavailable"]

log = structlog.get_logger("signaling.cluster")

#: Commands sent in one pipeline at most: large enough to carry a burst, small enough to keep replies flowing.
BATCH: Final = 512
#: Texts carried by one PUBLISH or one ``signaling_deliver`` call at most.
MERGE: Final = 256
#: Seconds a fenced command's deadline is set before this node would give up on it, at least: room for the error
#: in the estimate of Redis's clock (half a round trip when it was read, plus drift until the next reading).
CLOCK_MARGIN: Final = 0.25

Command = tuple[Any, ...]


class _Publish:
    """A PUBLISH still in the outbox, to which texts for the same channel are added."""

    __slots__ = ("channel", "records")

    def __init__(self, channel: str, record: str) -> None:
        self.channel = channel
        self.records = [record]

    def command(self) -> Command:
        return ("PUBLISH", self.channel, RECORD_SEPARATOR.join(self.records))


#: Called when Redis refused a text for resumable members (out of memory, say): it was neither kept nor sent.
Refused = Callable[[], None]


class Numbered:
    """A ``signaling_deliver`` call: texts for resumable members, numbered and kept by Redis, each text once for
    all its recipients. More are added while it waits in the outbox; once written it has its place in this
    process's order of calls (``number``), and Redis runs each number once, so that one whose fate a lost link
    leaves unknown can be sent again. ``refused`` holds, per text, whom to tell if Redis refuses the call."""

    __slots__ = ("args", "bounds", "count", "number", "refused")

    def __init__(self, bounds: tuple[int, int], peers: str, head: str, tail: str, refused: Refused | None) -> None:
        self.bounds = bounds
        self.args = [peers, head, tail]
        self.refused = [refused]
        self.count = 1
        #: 0 until written.
        self.number = 0

    def add(self, peers: str, head: str, tail: str, refused: Refused | None) -> None:
        self.args += (peers, head, tail)
        self.refused.append(refused)
        self.count += 1


Entry = Command | _Publish | Numbered


class Unavailable(Exception):
    """Redis cannot be reached, the link to it was lost, or it refused a command (an error reply, or a fenced
    command that reached it after its deadline): the cluster's state was not read or changed."""


class RedisLink:
    """The connections of one node (``node``) to the Redis at ``url``.

    Args:
        on_change: called with each membership change published on the cluster's members channel.
        on_delivery: called with each payload published on this node's channel.
        on_lost: called once, with the reason, when the link fails.
        on_refused: called with a ``signaling_deliver`` call that Redis refused (an error reply: out of memory,
            say), and the error; the link stays up.
        sender: this process's name for the order of its ``signaling_deliver`` calls, the same on every link it
            makes, and ``numbers`` the counter of that order.
        outbox_limit: commands waiting for Redis past which the link counts as lost (Redis is not keeping up).
        timeout: seconds to connect, and for a reply.
    """

    def __init__(
        self,
        url: str,
        names: Names,
        node: str,
        *,
        on_change: Callable[[str], None],
        on_delivery: Callable[[str], None],
        on_lost: Callable[[str], None],
        on_refused: Callable[[Numbered, str], None] | None = None,
        sender: str,
        numbers: Iterator[int],
        outbox_limit: int = 100_000,
        timeout: float = 5.0,
    ) -> None:
        self.names = names
        self.node = node
        self._sender = sender
        self._numbers = numbers
        #: The deliveries whose fate is unknown once the link is lost (``unconfirmed``).
        self._unconfirmed: list[Numbered] = []
        self._timeout = timeout
        #: Redis's clock minus this loop's, and how far that estimate may be off (``sync_clock``).
        self._clock_offset = 0.0
        self._clock_margin = CLOCK_MARGIN
        self._client = redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._pubsub = self._client.pubsub()
        self._on_change = on_change
        self._on_delivery = on_delivery
        self._on_lost = on_lost
        self._on_refused = on_refused
        self._outbox: collections.deque[tuple[Entry, asyncio.Future[Any] | None]] = collections.deque()
        self._outbox_limit = outbox_limit
        self._wake = asyncio.Event()
        #: Sent, waiting for its reply, in order: what the command was and who waits for it.
        self._sent: collections.deque[tuple[Entry, asyncio.Future[Any] | None]] = collections.deque()
        self._sent_wake = asyncio.Event()
        self._conn: Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.up = False
        self._lost_reason: str | None = None
        #: The subscription's client id in Redis, to read its output buffer (None: Redis refused CLIENT ID).
        self.subscriber: int | None = None

    async def open(self) -> None:
        """Connect, load the function library, subscribe, and start the writer and the reader.

        Raises:
            Unavailable: Redis did not answer (the link is then closed).
        """
        try:
            await self._client.function_load(LIBRARY, replace=True)
            loop = asyncio.get_running_loop()
            sent = loop.time()
            seconds, micros = await self._client.time()
            self._set_clock(sent, loop.time(), seconds, micros)
            # The outbox's own connection: commands stream out on it, their replies come back in order.
            self._conn = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            self.subscriber = await self._subscriber_id()
            await self._pubsub.subscribe(self.names.members_channel, self.names.node_channel(self.node))
            # Both subscriptions confirmed before anything is published to them (bounded: a Redis that accepts
            # the connection but never answers must not hang the node's start).
            confirmed = 0
            async with asyncio.timeout(self._timeout):
                while confirmed < 2:
                    message = await self._pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "subscribe":
                        confirmed += 1
        except (RedisError, OSError, TimeoutError) as exc:
            await self.close()
            raise Unavailable(f"redis: {exc}") from exc
        self.up = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write()),
            loop.create_task(self._replies()),
            loop.create_task(self._read()),
        ]

    async def _subscriber_id(self) -> int | None:
        """The subscription connection's ``CLIENT ID``, asked before it subscribes (a subscribed connection takes no
        other command): the node watches that client's output buffer in Redis, its backlog."""
        await self._pubsub.execute_command("CLIENT", "ID")
        try:
            reply = await self._pubsub.parse_response(block=False, timeout=self._timeout)
        except ResponseError:  # renamed or forbidden (managed Redis, an ACL): the link works without it
            return None
        if reply is None:
            raise RedisTimeoutError("no reply to CLIENT ID")
        return int(reply)

    async def close(self) -> None:
        """Stop the tasks and close the connections, bounded in time: a task stuck writing to a dead socket (its
        cancellation can wait on the socket) must not keep the node from linking again."""
        self.up = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if self._conn is not None:
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await self._conn.disconnect(nowait=True)
            self._conn = None
        if tasks:
            await asyncio.wait(tasks, timeout=self._timeout)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("redis_link_task_failed", exc_info=task.exception())
        self._fail_outbox()
        for closing in (self._pubsub.aclose, self._client.aclose):
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await closing()

    # ------------------------------------------------------------------ commands

    async def call(self, *command: Any) -> Any:
        """Queue ``command`` behind the ones issued before it and return its reply.

        Raises:
            Unavailable: the link is down or was lost meanwhile, or Redis refused the command (an error reply: out
                of memory, a library of another version...); the link stays up then.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(command, future)
        try:
            return await future
        except ResponseError as exc:
            raise Unavailable(f"redis refused {command[0]} {command[1] if len(command) > 1 else ''}: {exc}") from exc

    async def fcall(self, function: str, *args: Any) -> Any:
        """Call a function of library.lua and return its reply."""
        return await self.call("FCALL", function, 0, self.names.prefix, *args)

    async def fenced(self, function: str, *args: Any) -> list[Any]:
        """Call a fenced function of library.lua (one that changes the shared state): Redis runs it only before
        this node would give up on it. Its reply starts with a status word.

        Raises:
            Unavailable: as ``call``, or Redis came to it too late and refused it (nothing was changed).
        """
        reply: list[Any] = await self.fcall(function, self.deadline(), *args)
        if reply[0] == "stale":
            raise Unavailable(f"redis reached {function} after this node had given up on it")
        return reply

    def deadline(self) -> float:
        """When, in Redis's clock, this node gives up on a command sent now (it fails the link within timeout)."""
        return asyncio.get_running_loop().time() + self._clock_offset + self._timeout - self._clock_margin

    async def sync_clock(self) -> None:
        """Read Redis's clock again: the estimate drifts with the two machines' clocks."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        seconds, micros = await self.call("TIME")
        self._set_clock(sent, loop.time(), seconds, micros)

    def _set_clock(self, sent: float, received: float, seconds: Any, micros: Any) -> None:
        self._clock_offset = int(seconds) + int(micros) / 1e6 - (sent + received) / 2
        self._clock_margin = max(CLOCK_MARGIN, received - sent)

    def publish(self, channel: str, record: str) -> None:
        """Publish ``record`` on ``channel``, together with the records for it queued just before."""
        outbox = self._outbox
        if outbox:
            last = outbox[-1][0]
            if type(last) is _Publish and last.channel == channel and len(last.records) < MERGE:
                last.records.append(record)
                return
        self._queue(_Publish(channel, record), None)

    def keep(
        self, peers: str, head: str, tail: str, max_count: int, max_bytes: int, refused: Refused | None = None
    ) -> None:
        """``signaling_deliver`` one text (``head``, the number, ``tail``) to resumable members (``peers``, joined
        by commas), with the texts queued just before."""
        outbox = self._outbox
        if outbox:
            last = outbox[-1][0]
            # Never into one written before (a lost link's, sent again): that must run as it ran, or not at all.
            if (
                type(last) is Numbered
                and not last.number
                and last.count < MERGE
                and last.bounds == (max_count, max_bytes)
            ):
                last.add(peers, head, tail, refused)
                return
        self._queue(Numbered((max_count, max_bytes), peers, head, tail, refused), None)

    def resend(self, deliveries: list[Numbered]) -> None:
        """Deliveries a lost link left unconfirmed, again, before anything else: Redis runs each number once."""
        for delivery in deliveries:
            self._queue(delivery, None)

    def unconfirmed(self) -> list[Numbered]:
        """Once the link is lost: the deliveries it took that Redis may not have run, in order."""
        return self._unconfirmed

    def _command(self, entry: Entry) -> Command:
        if type(entry) is tuple:
            return entry
        if type(entry) is Numbered:
            if not entry.number:
                entry.number = next(self._numbers)
            prefix = self.names.prefix
            return ("FCALL", "signaling_deliver", 0, prefix, self._sender, entry.number, *entry.bounds, *entry.args)
        return entry.command()  # type: ignore[union-attr]

    def _queue(self, command: Entry, future: asyncio.Future[Any] | None) -> None:
        if not self.up:
            if future is not None:
                future.set_exception(Unavailable(self._lost_reason or "redis is not connected"))
            return
        self._outbox.append((command, future))
        if len(self._outbox) + len(self._sent) > self._outbox_limit:
            self.fail(f"{len(self._outbox) + len(self._sent)} commands waiting: redis is not keeping up")
            return
        self._wake.set()

    async def _write(self) -> None:
        outbox, sent, conn = self._outbox, self._sent, self._conn
        assert conn is not None
        while True:
            if not outbox:
                self._wake.clear()
                await self._wake.wait()
            batch = [outbox.popleft() for _ in range(min(BATCH, len(outbox)))]
            commands = [self._command(entry) for entry, _ in batch]
            sent.extend(batch)
            self._sent_wake.set()
            try:
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            except (RedisError, OSError, RuntimeError) as exc:  # uvloop: RuntimeError on a closed transport
                self.fail(f"redis: {exc}")
                return

    async def _replies(self) -> None:
        """Read the replies to what the writer sent, in order, and hand each to whoever waits for it."""
        sent, conn = self._sent, self._conn
        assert conn is not None
        while True:
            if not sent:
                self._sent_wake.clear()
                await self._sent_wake.wait()
                continue
            try:
                reply: Any = await conn.read_response()
            except ResponseError as exc:
                reply = exc
            except (RedisError, OSError) as exc:
                self.fail(f"redis: {exc}")
                return
            entry, future = sent.popleft()
            if future is not None:
                if not future.done():
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
            elif isinstance(reply, ResponseError):
                if type(entry) is Numbered and self._on_refused is not None:
                    self._on_refused(entry, str(reply))
                else:
                    log.error("redis_command_failed", command=str(self._command(entry)[:2]), error=str(reply))

    def _fail_outbox(self) -> None:
        error = Unavailable(self._lost_reason or "redis link closed")
        for queue in (self._sent, self._outbox):
            while queue:
                entry, future = queue.popleft()
                if type(entry) is Numbered:
                    self._unconfirmed.append(entry)
                elif future is not None and not future.done():
                    future.set_exception(error)

    # ------------------------------------------------------------------ subscription

    async def _read(self) -> None:
        members = self.names.members_channel
        try:
            while True:
                message = await self._pubsub.get_message(timeout=None)
                if message is None or message["type"] != "message":
                    continue
                handle = self._on_change if message["channel"] == members else self._on_delivery
                try:
                    handle(message["data"])
                except Exception:  # a bad payload or a bug must not stop the subscription of every client
                    log.exception("redis_message_failed", channel=message["channel"])
        except (RedisError, OSError) as exc:
            self.fail(f"redis subscription: {exc}")

    def fail(self, reason: str) -> None:
        """The link is lost (or must be given up): fail what waits, and tell the node once."""
        if not self.up:
            return
        self.up = False
        self._lost_reason = reason
        self._fail_outbox()
        self._on_lost(reason)

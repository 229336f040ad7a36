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
since a silent reconnect would lose what was published meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as redis
import structlog
from redis.asyncio.connection import Connection
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from .schema import LIBRARY, RECORD_SEPARATOR, Names

__all__ = ["RedisLink", "Unavailable"]

log = structlog.get_logger("signaling.cluster")

#: Commands sent in one pipeline at most: large enough to carry a burst, small enough to keep replies flowing.
BATCH: Final = 512
#: Texts carried by one PUBLISH or one ``signaling_deliver`` call at most.
MERGE: Final = 256

Command = tuple[Any, ...]


class _Publish:
    """A PUBLISH still in the outbox, to which texts for the same channel are added."""

    __slots__ = ("channel", "records")

    def __init__(self, channel: str, record: str) -> None:
        self.channel = channel
        self.records = [record]

    def command(self) -> Command:
        return ("PUBLISH", self.channel, RECORD_SEPARATOR.join(self.records))


class _Keep:
    """A ``signaling_deliver`` call still in the outbox, to which more texts for resumable members are added."""

    __slots__ = ("args", "bounds", "count", "prefix")

    def __init__(self, prefix: str, bounds: tuple[int, int], peer: str, head: str, tail: str) -> None:
        self.prefix = prefix
        self.bounds = bounds
        self.args = [peer, head, tail]
        self.count = 1

    def command(self) -> Command:
        return ("FCALL", "signaling_deliver", 0, self.prefix, *self.bounds, *self.args)


Entry = Command | _Publish | _Keep


class Unavailable(Exception):
    """Redis cannot be reached (or the link to it was lost): the cluster's state cannot be read or changed."""


class RedisLink:
    """The connections of one node (``node``) to the Redis at ``url``.

    Args:
        on_change: called with each membership change published on the cluster's members channel.
        on_delivery: called with each payload published on this node's channel.
        on_lost: called once, with the reason, when the link fails.
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
        outbox_limit: int = 100_000,
        timeout: float = 5.0,
    ) -> None:
        self.names = names
        self.node = node
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
        self._outbox: collections.deque[tuple[Entry, asyncio.Future[Any] | None]] = collections.deque()
        self._outbox_limit = outbox_limit
        self._wake = asyncio.Event()
        #: Sent, waiting for its reply, in order: what the command was (for logs) and who waits for it.
        self._sent: collections.deque[tuple[str, asyncio.Future[Any] | None]] = collections.deque()
        self._sent_wake = asyncio.Event()
        self._conn: Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.up = False
        self._lost_reason: str | None = None

    async def open(self) -> None:
        """Connect, load the function library, subscribe, and start the writer and the reader.

        Raises:
            Unavailable: Redis did not answer (the link is then closed).
        """
        try:
            await self._client.function_load(LIBRARY, replace=True)
            # The outbox's own connection: commands stream out on it, their replies come back in order.
            self._conn = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            await self._pubsub.subscribe(self.names.members_channel, self.names.node_channel(self.node))
            # Both subscriptions confirmed before anything is published to them.
            confirmed = 0
            while confirmed < 2:
                message = await self._pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "subscribe":
                    confirmed += 1
        except (RedisError, OSError) as exc:
            await self.close()
            raise Unavailable(f"redis: {exc}") from exc
        self.up = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write()),
            loop.create_task(self._replies()),
            loop.create_task(self._read()),
        ]

    async def close(self) -> None:
        self.up = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._fail_outbox()
        if self._conn is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._conn.disconnect()
            self._conn = None
        for closing in (self._pubsub.aclose, self._client.aclose):
            with contextlib.suppress(RedisError, OSError):
                await closing()

    # ------------------------------------------------------------------ commands

    async def call(self, *command: Any) -> Any:
        """Queue ``command`` behind the ones issued before it and return its reply.

        Raises:
            Unavailable: the link is down or was lost meanwhile.
            ResponseError: Redis refused the command (a bug here, or a library of another version).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(command, future)
        return await future

    async def fcall(self, function: str, *args: Any) -> Any:
        """Call a function of library.lua and return its reply."""
        return await self.call("FCALL", function, 0, self.names.prefix, *args)

    def publish(self, channel: str, record: str) -> None:
        """Publish ``record`` on ``channel``, together with the records for it queued just before."""
        outbox = self._outbox
        if outbox:
            last = outbox[-1][0]
            if type(last) is _Publish and last.channel == channel and len(last.records) < MERGE:
                last.records.append(record)
                return
        self._queue(_Publish(channel, record), None)

    def keep(self, peer: str, head: str, tail: str, max_count: int, max_bytes: int) -> None:
        """``signaling_deliver`` one text to a resumable member, with the texts queued just before."""
        outbox = self._outbox
        if outbox:
            last = outbox[-1][0]
            if type(last) is _Keep and last.bounds == (max_count, max_bytes) and last.count < MERGE:
                last.args += (peer, head, tail)
                last.count += 1
                return
        self._queue(_Keep(self.names.prefix, (max_count, max_bytes), peer, head, tail), None)

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
            commands = [entry if type(entry) is tuple else entry.command() for entry, _ in batch]  # type: ignore[union-attr]
            for (_, future), command in zip(batch, commands, strict=True):
                sent.append((str(command[:2]), future))
            self._sent_wake.set()
            try:
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            except (RedisError, OSError) as exc:
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
            command, future = sent.popleft()
            if future is not None:
                if not future.done():
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
            elif isinstance(reply, ResponseError):
                log.error("redis_command_failed", command=command, error=str(reply))

    def _fail_outbox(self) -> None:
        error = Unavailable(self._lost_reason or "redis link closed")
        for queue in (self._sent, self._outbox):
            while queue:
                future = queue.popleft()[1]
                if future is not None and not future.done():
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

"""One server process in a cluster: its link to Redis, its heartbeat, and what happens when Redis goes away.

A node registers under a fresh id and renews a heartbeat key that expires after ``node_ttl`` seconds: when a
node dies without a word (SIGKILL, a lost host), the others' sweep finds its heartbeat gone and ends its
members' sessions (the resumable ones after their grace, so that they may resume on another node).

When the link to Redis fails, the node cannot keep its rooms true: it reports not ready, its clients are closed
(``on_lost``) so that they reconnect elsewhere or later, and it tries again every second. Once Redis answers it
registers under a new id (the old one's leftovers are swept like a dead node's) and is ready again
(``on_restored``).

At each link the node reads the two settings of Redis the cluster depends on (redis_config.py), and at each
heartbeat its subscription's backlog: the output buffer Redis holds for it, which past Redis's limit cuts the
subscription. Both go to /healthz and /metrics, so an operator sees the trouble before the clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import socket
import time
from collections.abc import Callable

import structlog

from signaling.protocol import facts
from signaling.protocol.errors import SignalingError
from signaling.rooms.backends import Backends
from signaling.rooms.delivery import Deliveries

from .directory import RedisDirectory
from .link import RedisLink, Unavailable
from .outbox import RedisOutbox
from .redis_config import RedisConfig, config_value, parse_omem, parse_output_limits
from .replay import RedisReplay
from .routing import RedisRouter
from .schema import Names

__all__ = ["LINK_TIMEOUT", "ClusterNode", "longest_stop", "new_node_id"]

log = structlog.get_logger("signaling.cluster")

#: Seconds between attempts to reach Redis again.
RETRY_PERIOD = 1.0


def new_node_id() -> str:
    """Random, unique across restarts: /healthz (unauthenticated) shows it, so it names no host or process; the
    log line ``cluster_joined`` maps it to them."""
    return f"n-{secrets.token_hex(6)}"


#: Seconds to connect to Redis, and to wait for a reply before the link counts as lost.
LINK_TIMEOUT = 5.0


def longest_stop(timeout: float = LINK_TIMEOUT) -> float:
    """About the longest ``ClusterNode.stop`` takes: when Redis does not answer, the retirement fails the link
    within one ``timeout`` and closing the link waits at most one more."""
    return 2 * timeout


class ClusterNode:
    """The Redis-backed room layer of this process (``backends``), and its link's life.

    Args:
        url: the Redis URL (``redis://host:port/db``, ``rediss://`` for TLS, ``unix://`` for a socket).
        prefix: the key prefix, so that several clusters may share one Redis.
        node_ttl: seconds without a heartbeat after which this node counts as dead.
        grace: seconds a resumable session outlives its connection (also when this node stops or dies).
        on_lost: called when the link fails: close the clients, report not ready.
        on_restored: called when it works again.
        timeout: seconds to connect, and to wait for a reply before the link counts as lost.
    """

    def __init__(
        self,
        url: str,
        *,
        max_peers_per_room: int = facts.DEFAULT_ROOM_MAX_PEERS,
        max_rooms: int = facts.DEFAULT_MAX_ROOMS,
        max_ghosts_per_address: int = facts.DEFAULT_MAX_GHOSTS_PER_ADDRESS,
        max_ghosts: int = facts.DEFAULT_MAX_GHOSTS,
        kept_count: int = facts.DEFAULT_RESUME_BUFFER,
        kept_bytes: int = facts.DEFAULT_RESUME_BUFFER_BYTES,
        grace: float = 0.0,
        prefix: str = "signaling",
        node_ttl: float = 10.0,
        on_lost: Callable[[str], None],
        on_restored: Callable[[], None],
        clock: Callable[[], float] = time.time,
        timeout: float = LINK_TIMEOUT,
        webhook_queue: int | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        #: This process's order of ``signaling_deliver`` calls, across its links (link.py).
        self._sender = secrets.token_urlsafe(12)
        self._numbers = itertools.count(1)
        self.names = Names(prefix)
        self.node_ttl = node_ttl
        self.directory = RedisDirectory(
            max_peers_per_room=max_peers_per_room,
            max_rooms=max_rooms,
            max_ghosts_per_address=max_ghosts_per_address,
            max_ghosts=max_ghosts,
            grace=grace,
        )
        self.router = RedisRouter(Deliveries(), kept_count=kept_count, kept_bytes=kept_bytes)
        self.replay = RedisReplay(kept_count=kept_count, kept_bytes=kept_bytes)
        #: The webhook outbox (``webhook_queue``: its bound; None: this node sends no webhooks).
        self.outbox = RedisOutbox(webhook_queue) if webhook_queue is not None else None
        self.backends = Backends(self.directory, self.router, self.replay, self.outbox)
        #: Where the messages of this node's channel go; the process wraps it in its transport's write batch.
        self.on_delivery: Callable[[str], None] = self.router.on_delivery
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._clock = clock
        self._link: RedisLink | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._stopping = False
        #: Where the next heartbeat goes on renewing the keys of this node's members (library.lua).
        self._renewed = "0"
        #: Why the link is down (None while up).
        self.down_reason: str | None = "not started"
        #: When (time.monotonic) the cluster's counts were last read: they lag by up to a heartbeat.
        self.stats_read_at: float | None = None
        #: Redis's settings as read at the last link (unknown ones None: before, or when CONFIG was refused).
        self.redis_config = RedisConfig(None, None)
        #: The subscription's output buffer in Redis at the last heartbeat, in bytes (None: not known).
        self.backlog_bytes: int | None = None
        self._config_refused_logged = False

    @property
    def up(self) -> bool:
        return self._link is not None and self._link.up

    @property
    def node(self) -> str:
        return self._link.node if self._link is not None else ""

    @property
    def lagging(self) -> bool:
        """Whether the subscription's backlog has passed half of Redis's limit: the node reads more slowly than
        its channel fills, and Redis cuts it if that goes on."""
        backlog = self.backlog_bytes
        return backlog is not None and backlog > self.redis_config.lag_threshold

    def stats_age(self) -> float | None:
        """Seconds since the cluster's counts were read (None: never)."""
        return None if self.stats_read_at is None else time.monotonic() - self.stats_read_at

    async def start(self) -> None:
        """Connect and register, or (Redis not answering) keep trying in the background: the server runs, not
        ready, until it can."""
        try:
            await self._connect()
        except Unavailable as exc:
            self._lost(str(exc))

    async def _connect(self) -> None:
        link = RedisLink(
            self.url,
            self.names,
            new_node_id(),
            on_change=self._on_change,
            on_delivery=lambda payload: self.on_delivery(payload),
            on_lost=self._lost,
            on_refused=self.router.on_refused,
            sender=self._sender,
            numbers=self._numbers,
            timeout=self.timeout,
        )
        await link.open()
        try:
            outbox = self.outbox.register_args() if self.outbox is not None else ()
            await link.fcall("signaling_register", link.node, self._ttl_ms, self._clock(), *outbox)
            self.redis_config = await self._read_config(link)
        except Unavailable:
            await link.close()
            raise
        self._link = link
        for part in (self.directory, self.router, self.replay, self.outbox):
            if part is not None:
                part.link_up(link)
        self.down_reason = None
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat(link))
        # The one place that maps the node id (random, shown by /healthz) to the host and process.
        log.info("cluster_joined", node=link.node, redis=self.names.prefix, host=socket.gethostname(), pid=os.getpid())

    def _on_change(self, payload: str) -> None:
        self.directory.on_change(payload)
        if self.outbox is not None:  # every event comes with a membership change: the sender looks
            self.outbox.poke()

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.node_ttl * 1000))

    async def _beat(self, link: RedisLink) -> None:
        """Renew the heartbeat at a third of its lifetime, and read the cluster's counts on the way."""
        period = self.node_ttl / 3
        while True:
            if not await self.settle(link):
                return
            await asyncio.sleep(period)

    async def settle(self, link: RedisLink | None = None) -> bool:
        """One heartbeat, which also brings the cluster's counts, Redis's clock and the subscription's backlog up
        to date; False when the link is lost."""
        link = link or self._link
        if link is None or not link.up:
            return False
        try:
            await link.sync_clock()
            reply = await link.fenced("signaling_beat", link.node, self._ttl_ms, self._renewed)
        except Unavailable as exc:
            if link.up:  # Redis refused a heartbeat: the node cannot prove it is alive
                link.fail(f"heartbeat refused: {exc}")
            return False
        if reply[0] != "ok":
            link.fail("this node missed its heartbeats and was declared dead")
            return False
        stats = self.directory.cluster
        stats.rooms, stats.peers, stats.nodes = (int(x) for x in reply[1:4])
        self._renewed = reply[4]
        self.stats_read_at = time.monotonic()
        return await self._measure_backlog(link)

    async def _read_config(self, link: RedisLink) -> RedisConfig:
        """Redis's ``maxmemory-policy`` and pub/sub output limits, each problem logged with what to set; both
        unknown when CONFIG is refused (renamed or forbidden on managed Redis), said once.

        Raises:
            Unavailable: the link was lost meanwhile.
        """
        try:
            policy = await link.call("CONFIG", "GET", "maxmemory-policy")
            limits = await link.call("CONFIG", "GET", "client-output-buffer-limit")
        except Unavailable as exc:
            if not link.up:
                raise
            if not self._config_refused_logged:
                self._config_refused_logged = True
                log.warning("redis_settings_unknown", node=link.node, error=str(exc))
            return RedisConfig(None, None)
        limit = config_value(limits, "client-output-buffer-limit")
        config = RedisConfig(
            policy=config_value(policy, "maxmemory-policy"),
            pubsub=parse_output_limits(limit) if limit is not None else None,
        )
        for problem in config.problems:
            report = log.error if problem.severity == "error" else log.warning
            report(
                "redis_settings",
                node=link.node,
                setting=problem.setting,
                found=problem.found,
                set=problem.want,
                why=problem.why,
            )
        return config

    async def _measure_backlog(self, link: RedisLink) -> bool:
        """Read the subscription's output buffer in Redis (``omem``); say when lagging starts and ends. False
        when the link is lost."""
        if link.subscriber is None:
            return True
        try:
            line = await link.call("CLIENT", "LIST", "ID", link.subscriber)
        except Unavailable as exc:
            if not link.up:
                return False
            log.warning("redis_backlog_unknown", node=link.node, error=str(exc))
            link.subscriber = None  # refused: not asked again on this link
            self.backlog_bytes = None
            return True
        was_lagging = self.lagging
        self.backlog_bytes = parse_omem(str(line))
        if self.lagging and not was_lagging:
            log.warning(
                "cluster_lagging",
                node=link.node,
                backlog_bytes=self.backlog_bytes,
                threshold=self.redis_config.lag_threshold,
            )
        elif was_lagging and not self.lagging:
            log.info("cluster_caught_up", node=link.node, backlog_bytes=self.backlog_bytes)
        return True

    def _lost(self, reason: str) -> None:
        self.down_reason = reason
        link, self._link = self._link, None
        self._unlink(link)
        log.error("cluster_lost", node=link.node if link else None, reason=reason)
        self._on_lost(reason)
        if not self._stopping and (self._recovery is None or self._recovery.done()):
            self._recovery = asyncio.get_running_loop().create_task(self._recover(link))

    async def _recover(self, lost: RedisLink | None) -> None:
        if lost is not None:
            await lost.close()
        while not self._stopping:
            await asyncio.sleep(RETRY_PERIOD)
            try:
                log.debug("cluster_retry", reason=self.down_reason)
                await self._connect()
            except Unavailable as exc:
                self.down_reason = str(exc)
                continue
            log.info("cluster_restored", node=self.node)
            self._on_restored()
            return

    async def stop(self) -> None:
        """Leave the cluster: members still here leave (the resumable ones keep their grace, to resume on another
        node), and the node is unregistered at once rather than after its heartbeat expires."""
        self._stopping = True
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        link = self._link
        if link is None:
            return
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        try:
            departures = await self.directory.retire(self._clock())
            self.backends.announce(departures)
            await link.call("PING")  # everything queued before it is through
        except (Unavailable, SignalingError):
            pass
        self._link = None
        self._unlink(None)
        await link.close()
        log.info("cluster_left", node=link.node)

    def _unlink(self, lost: RedisLink | None) -> None:
        self.backlog_bytes = None  # no subscription, no backlog
        self.directory.link_down()
        self.router.link_down(lost)
        self.replay.link_down()
        if self.outbox is not None:
            self.outbox.link_down()

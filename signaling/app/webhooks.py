"""Webhooks: the outbox's events POSTed to the application's backend, signed as Standard Webhooks define.

Each event goes to every URL with ``webhook-id`` (the same on every try), ``webhook-timestamp`` and
``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` with the ``whsec_`` secret), so a
receiver verifies it with the ``standardwebhooks`` library. A room's events go in ``seq`` order: the next is not
sent to a URL before that URL answered the previous one 2xx or it was given up (after ``retry_for`` seconds of
tries, backing off from 0.5 s to 30 s). Rooms do not wait for each other, nor URLs: an event leaves the outbox
once every URL is done with it. Nothing here runs on the relay's path:
the directory records an event in the step that changes the room, and this sender works from the outbox.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import random
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import structlog

from signaling.rooms.events import Outbox, RoomEvent
from signaling.ws.aio.stats import Histogram

from .http_client import HttpPoster, PostFailed

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "WebhookSender", "new_secret", "secret_key", "sign"]

log = structlog.get_logger("signaling.webhooks")

SECRET_PREFIX: Final = "whsec_"
#: Seconds before the first retry, doubling up to the last.
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0
#: Events taken from the outbox and not finished, at most: each room's are sent in order, the rooms at once.
WINDOW: Final = 1000
#: Seconds between looks at the outbox when nothing woke the sender (in a cluster, this renews its lease).
POLL: Final = 1.0


def new_secret() -> str:
    """A new signing secret: ``whsec_`` and 32 random bytes in base64 (``signaling webhook-secret``)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (its base64 part, decoded).

    Raises:
        ValueError: not ``whsec_`` followed by base64 of 24 to 64 bytes.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_ (signaling webhook-secret prints one)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes (signaling webhook-secret prints one)")
    return key


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` of one try."""
    digest = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookSender:
    """Sends the events of ``outbox`` to ``urls`` until stopped."""

    def __init__(
        self,
        urls: list[str],
        secret: str,
        outbox: Outbox,
        *,
        retry_for: float,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.key = secret_key(secret)
        self.posters = [HttpPoster(url, timeout=timeout, ssl_context=ssl_context) for url in urls]
        self.outbox = outbox
        self.retry_for = retry_for
        self.clock = clock
        self.wall_clock = wall_clock
        #: Deliveries answered 2xx, tries that failed and are retried, and deliveries given up (per URL).
        self.sent = 0
        self.retried = 0
        self.given_up = 0
        #: Seconds from an event's change to its 2xx.
        self.latency = Histogram((0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
        #: Whether this process is the one sending (always, alone; in a cluster, the node holding the lease).
        self.sending = False
        #: Per URL (its index) and room, the events that URL has still to get, in order, and the task sending them.
        self._queues: dict[tuple[int, str], deque[RoomEvent]] = {}
        self._workers: dict[tuple[int, str], asyncio.Task[None]] = {}
        #: Per event taken: the URLs it has still to reach, and its body (the same bytes on every try).
        self._open: dict[str, tuple[int, bytes]] = {}
        self._taken = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        outbox.wake = self._wake.set

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, flush: float = 0.0) -> None:
        """Stop sending; first, for up to ``flush`` seconds, deliver what the outbox holds (a single process's
        outbox is in memory and goes with it; a cluster's waits in Redis for another node)."""
        if flush > 0 and not self.outbox.waits:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush):
                    while self.outbox.depth():
                        self._wake.clear()
                        await self._wake.wait()
        tasks = [t for t in (self._task, *self._workers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        for poster in self.posters:
            await poster.close()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            space = WINDOW - self._taken
            try:
                events = await self.outbox.take(space)
            except Exception:  # never the end of webhooks: look again at the next poll
                log.exception("webhook_outbox_failed")
                await asyncio.sleep(POLL)
                continue
            self.sending = events is not None
            if events is None:
                self._abandon()
            else:
                for event in events:
                    self._add(event)
                if events and len(events) == space:
                    continue  # there may be more: take them while there is room
            if not self.sending:  # another node sends: only look again, at the poll, whether it still does
                await asyncio.sleep(POLL)
                continue
            with contextlib.suppress(TimeoutError):  # wakes coalesce: one take for all the changes meanwhile
                async with asyncio.timeout(POLL):
                    await self._wake.wait()

    def health(self) -> dict[str, object]:
        """For /healthz: whether this process sends, what waits, what was given up."""
        return {"sending": self.sending, "queue": self.outbox.depth(), "given_up": self.given_up}

    def _add(self, event: RoomEvent) -> None:
        self._taken += 1
        self._open[event.id] = (len(self.posters), event.body())
        for index in range(len(self.posters)):
            key = (index, event.room)
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = deque()
                self._workers[key] = asyncio.get_running_loop().create_task(self._send(key, queue))
            queue.append(event)

    def _abandon(self) -> None:
        """Another node sends now (or Redis is lost): what was taken is its to send, from the outbox."""
        for task in self._workers.values():
            task.cancel()
        self._workers.clear()
        self._queues.clear()
        self._open.clear()
        self._taken = 0

    async def _send(self, key: tuple[int, str], queue: deque[RoomEvent]) -> None:
        """Send one room's events to one URL in order, then end (a later event starts a new task). URLs do not
        wait for each other: a receiver that is down holds back its own events only."""
        poster = self.posters[key[0]]
        try:
            while queue:
                event = queue[0]
                await self._deliver(poster, event, self._open[event.id][1])
                queue.popleft()
                await self._reached(event)
        finally:
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]
                del self._queues[key]

    async def _reached(self, event: RoomEvent) -> None:
        """One URL is done with ``event`` (a 2xx, or given up); once every URL is, it leaves the outbox."""
        left, body = self._open[event.id]
        if left > 1:
            self._open[event.id] = (left - 1, body)
            return
        del self._open[event.id]
        self._taken -= 1
        await self.outbox.done([event])
        self._wake.set()

    async def _deliver(self, poster: HttpPoster, event: RoomEvent, body: bytes) -> None:
        """Try until a 2xx, or until ``retry_for`` seconds have passed: then give it up."""
        first = self.clock()
        delay = BACKOFF_FIRST
        tries = 0
        while True:
            tries += 1
            stamp = int(self.wall_clock())
            headers = [
                ("webhook-id", event.id),
                ("webhook-timestamp", str(stamp)),
                ("webhook-signature", sign(self.key, event.id, stamp, body)),
            ]
            try:
                status: int | str = await poster.post(body, headers)
            except PostFailed as exc:
                status = str(exc)
            if isinstance(status, int) and 200 <= status < 300:
                self.sent += 1
                self.latency.observe(max(0.0, self.wall_clock() - event.at_ms / 1000))
                return
            if self.clock() - first + delay > self.retry_for:
                self.given_up += 1
                log.error(
                    "webhook_given_up", url=poster.url, id=event.id, type=event.type, room=event.room,
                    seq=event.seq, tries=tries, last=status,
                )  # fmt: skip
                return
            self.retried += 1
            level = log.warning if tries == 1 else log.debug
            level(
                "webhook_retry", url=poster.url, id=event.id, room=event.room, seq=event.seq, tries=tries, last=status
            )
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))
            delay = min(delay * 2, BACKOFF_MAX)

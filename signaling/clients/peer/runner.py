"""The run loop of ``signaling peer``: join the room, keep one :class:`Link` per other peer, shut down.

:class:`Peer` dispatches each signaling message to the link of the peer it comes from and creates links as
peers appear: for those in its ``welcome`` it is the newcomer, so it offers (``initiator``); for those who join
later it waits for their offer. :func:`run_peer` runs one peer from the parsed options to an exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Mapping
from typing import Any, Final

import structlog

from signaling.clients.peer.link import TEXT_LOG_LIMIT, Link, LinkContext
from signaling.clients.peer.media import LocalMedia
from signaling.clients.peer.options import PeerOptions
from signaling.clients.peer.sdp import restrict_host_addresses
from signaling.clients.signaling_client import SignalingClient, SignalingErrorReply
from signaling.protocol.facts import ENDPOINT_ENDED, ENDPOINT_KINDS
from signaling.protocol.models import (
    ErrorMessage,
    IceServer,
    IceServersUpdate,
    PeerJoined,
    PeerLeft,
    RelayedAnswer,
    RelayedCandidate,
    RelayedMessage,
    RelayedOffer,
    ServerMessage,
    Welcome,
)
from signaling.ws.exceptions import ConnectionClosed, WebSocketError

__all__ = ["Peer", "run_peer"]

log = structlog.get_logger("signaling.peer")

#: Bound on closing connections and leaving at shutdown.
SHUTDOWN_TIMEOUT_S: Final = 5.0


def is_endpoint(meta: Mapping[str, Any] | None) -> bool:
    """Whether a peer is a WHIP or WHEP session (docs/protocol.md, "WHIP and WHEP"), by its ``meta.kind``."""
    return meta is not None and meta.get("kind") in ENDPOINT_KINDS


class Peer:
    """Joins the room and keeps one Link per other peer in it until stopped."""

    def __init__(self, options: PeerOptions, client: SignalingClient, media: LocalMedia) -> None:
        self.options = options
        self.client = client
        self.media = media
        self.id = ""
        self.ice_servers: list[IceServer] = []
        self.links: dict[str, Link] = {}
        self._recording: str | None = None  # the remote peer recorded when --record has no {peer}
        #: The WHIP/WHEP sessions of the room: they offer to us, once; we tell them when their media failed.
        self.endpoints: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _record_path_for(self, remote: str) -> str | None:
        """Where to record ``remote``: ``{peer}`` in --record makes one file per peer; else the first peer only."""
        path = self.options.record
        if path is None:
            return None
        if "{peer}" in path:
            return path.replace("{peer}", remote)
        if self._recording is None:
            self._recording = remote
            return path
        log.info("not_recording", peer=remote, reason="--record has no {peer}; recording the first peer only")
        return None

    def _release_record_path(self, remote: str) -> None:
        if self._recording == remote:
            self._recording = None

    def link(self, remote: str, *, initiator: bool) -> Link:
        link = self.links.get(remote)
        if link is None:
            context = LinkContext(
                self_id=self.id,
                ice_servers=self.ice_servers,
                relay_only=self.options.relay_only,
                media=self.media,
                signals=self.client,
                echo=self.options.echo,
                hello_interval=self.options.hello_interval,
                stats_interval=self.options.stats_interval,
                record_path=self._record_path_for(remote),
                on_failed=self._failed if remote in self.endpoints else None,
            )
            link = self.links[remote] = Link(context, remote, initiator=initiator)
        return link

    def _failed(self, remote: str) -> None:
        """The media with a WHIP/WHEP session failed: it cannot restart ICE, so tell it to leave, and drop it."""
        log.info("endpoint_media_failed", peer=remote)
        task = asyncio.get_running_loop().create_task(self._end_endpoint(remote))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_endpoint(self, remote: str) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.client.send_message({"type": ENDPOINT_ENDED}, to=remote)
        await self.drop(remote)

    async def drop(self, remote: str) -> None:
        link = self.links.pop(remote, None)
        if link is not None:
            await link.close()
            self._release_record_path(remote)

    async def run(self, stop: asyncio.Event) -> int:
        """Join, then serve signaling until ``stop`` is set (0) or the signaling connection ends (1)."""
        opts = self.options
        try:
            welcome = await self.client.join(
                opts.room, name=opts.name, meta={"agent": "signaling-peer"}, token=opts.token
            )
        except SignalingErrorReply as exc:
            log.error("join_failed", code=exc.code, message=exc.message)
            return 1
        self._enter(welcome)
        signals = asyncio.create_task(self._serve_signals(), name="signals")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait({signals, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            signals.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await signals
        if stop.is_set():
            return 0
        error = signals.exception() if not signals.cancelled() else None
        if error is not None and not isinstance(error, ConnectionClosed):
            log.error("signaling_failed", error=f"{type(error).__name__}: {error}")
        else:
            log.error("signaling_closed", code=self.client.close_code)
        return 1

    def _enter(self, welcome: Welcome) -> None:
        self.id = welcome.peer
        self.ice_servers[:] = welcome.iceServers  # in place: every link reads this list
        log.info(
            "joined",
            self_id=self.id,
            room=welcome.room,
            peers=[p.peer for p in welcome.peers],
            ice_servers=len(self.ice_servers),
            resumable=welcome.resume is not None,
        )
        for info in welcome.peers:
            if is_endpoint(info.meta):
                self.endpoints.add(info.peer)
            else:  # a WHIP/WHEP session offers when it wants us, once
                self.link(info.peer, initiator=True)  # we are the newcomer: we offer

    async def _reconnected(self, welcome: Welcome) -> None:
        """The signaling connection dropped and came back. Resumed: the media never stopped, the links go on
        (what was missed is replayed next). A fresh session: the others saw us leave, so start over."""
        if welcome.resumed:
            log.info("session_resumed", self_id=welcome.peer, links=len(self.links))
            self.ice_servers[:] = welcome.iceServers
            listed = {info.peer for info in welcome.peers}
            for remote in [r for r in self.links if r not in listed]:
                await self.drop(remote)  # gone while we were away (its peer-left is in the replay too)
            return
        log.info("session_restarted", self_id=welcome.peer, previous=self.id)
        for remote in list(self.links):
            await self.drop(remote)
        self._enter(welcome)

    async def _serve_signals(self) -> None:
        async for msg in self.client:
            await self._dispatch(msg)

    async def _dispatch(self, msg: ServerMessage) -> None:
        if isinstance(msg, Welcome):
            await self._reconnected(msg)
        elif isinstance(msg, RelayedOffer | RelayedAnswer | RelayedCandidate):
            # An offer can come before peer-joined only from a peer we have not heard of yet: it starts.
            self.link(msg.from_, initiator=False).handle(msg)
        elif isinstance(msg, PeerJoined):
            log.info("peer_joined", peer=msg.peer, name=msg.name, meta=msg.meta)
            if is_endpoint(msg.meta):  # a WHIP/WHEP session offers to one peer only, maybe not us
                self.endpoints.add(msg.peer)
            else:
                self.link(msg.peer, initiator=False)  # the newcomer offers; we wait for it
        elif isinstance(msg, PeerLeft):
            log.info("peer_left", peer=msg.peer)
            self.endpoints.discard(msg.peer)
            await self.drop(msg.peer)
            log.info("links", count=len(self.links))
        elif isinstance(msg, RelayedMessage):
            log.info("signaling_message", peer=msg.from_, data=str(msg.data)[:TEXT_LOG_LIMIT])
        elif isinstance(msg, IceServersUpdate):
            # New connections (and replacements) use them; aiortc cannot change a live connection's servers.
            self.ice_servers[:] = msg.iceServers
            log.info("ice_servers_updated", ice_servers=len(self.ice_servers))
        elif isinstance(msg, ErrorMessage):
            log.warning("signaling_error", code=str(msg.code), message=msg.message)

    async def shutdown(self) -> None:
        """Close every connection, then leave the room; bounded so a stuck close cannot hang the exit."""
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                await asyncio.gather(*(link.close() for link in self.links.values()), return_exceptions=True)
                self.links.clear()
                if not self.client.closed:
                    with contextlib.suppress(ConnectionClosed, OSError):
                        await self.client.leave()
        except TimeoutError:
            log.warning("shutdown_timeout", seconds=SHUTDOWN_TIMEOUT_S)


async def run_peer(options: PeerOptions) -> int:
    """Run one peer until --duration, SIGINT/SIGTERM, or the signaling connection ends; the exit status."""
    if options.host_addresses:
        restrict_host_addresses(options.host_addresses)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if options.duration is not None:
        loop.call_later(options.duration, stop.set)
    try:
        media = LocalMedia(options)
    except Exception as exc:  # PyAV raises its own errors (InvalidDataError...) for a --play it cannot read
        log.error("media_failed", play=options.play, error=f"{type(exc).__name__}: {exc}")
        return 2
    try:
        ssl_context = ssl.create_default_context(cafile=options.cafile) if options.cafile else None
        client = await SignalingClient.connect(options.urls, ssl=ssl_context)
    except (OSError, TimeoutError, WebSocketError, ValueError) as exc:
        log.error("connect_failed", url=options.url, error=f"{type(exc).__name__}: {exc}")
        media.close()
        return 1
    peer = Peer(options, client, media)
    try:
        status = await peer.run(stop)
    finally:
        await peer.shutdown()
        await client.close()
        media.close()
    log.info("stopped", status=status)
    return status

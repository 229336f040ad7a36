"""``signaling peer``: a headless aiortc WebRTC peer that joins a room and connects to everyone there.

It is the project's reference peer: a test tool (it logs machine-readable progress), a load and interop
partner for browsers, and an example of driving aiortc through the signaling protocol.

Design notes (the why behind the code):

* One :class:`Link` (one RTCPeerConnection) per remote peer. Roles follow web/call.js so that aiortc and
  browser peers agree without extra messages: the *newcomer* (who finds the other in its ``welcome``) makes the
  first offer; the other waits, and offers itself only if nothing came within ``FALLBACK_OFFER_S``. The peer
  whose id sorts first is *polite*.
* Perfect negotiation, adapted to aiortc (1.16): it has no rollback. ``setRemoteDescription(offer)`` in
  ``have-local-offer`` raises InvalidStateError, and a ``rollback`` description is accepted but changes nothing
  (the state stays ``have-local-offer``). So on glare the impolite side ignores the incoming offer (and the
  candidates that follow it), while the polite side "rolls back" by replacing its not-yet-answered
  RTCPeerConnection with a fresh one and answering. This peer only ever offers before the first exchange
  completes, so nothing established is lost by that. For the same reason (no ICE restart, no DTLS
  renegotiation), an offer that arrives for a closed or failed connection, or that carries a new DTLS
  fingerprint (the remote side made a new RTCPeerConnection), is answered by a fresh connection too.
* An answering connection gets its tracks only after the offer is applied, on the m-lines the offer has:
  aiortc cannot create an answer while a local track has no m-line (``ValueError: None is not in list``).
* aiortc gathers every candidate inside ``setLocalDescription`` and never emits ``icecandidate``. The SDP
  already holds them; they are trickled as well (one ``candidate`` message per ``a=candidate`` line, then
  ``candidate: null``) for peers that only look at trickled candidates. Remote trickled candidates are applied
  with ``candidate_from_sdp``; those that arrive before the remote description wait for it.
* Every signaling message of one remote peer, and every negotiation step, runs through that link's single
  worker task, in order: aiortc's calls are coroutines, and interleaving two of them on one connection is
  what breaks negotiation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import math
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol, cast

import structlog

from signaling.clients.peer.media import (
    HAVE_AIORTC,
    PATTERN_MIN_HEIGHT,
    PATTERN_MIN_WIDTH,
    LocalMedia,
    Recording,
    consume,
)
from signaling.clients.peer.options import PeerOptions
from signaling.clients.peer.sdp import (
    candidate_from_init,
    fingerprints,
    restrict_host_addresses,
    rtc_ice_servers,
    sdp_candidates,
)
from signaling.clients.signaling_client import SignalingClient, SignalingErrorReply
from signaling.protocol.models import (
    ErrorMessage,
    IceCandidate,
    IceServer,
    PeerJoined,
    PeerLeft,
    RelayedAnswer,
    RelayedCandidate,
    RelayedMessage,
    RelayedOffer,
    ServerMessage,
)
from signaling.ws.exceptions import ConnectionClosed, WebSocketError

if TYPE_CHECKING:
    from aiortc import (
        MediaStreamTrack,
        RTCDataChannel,
        RTCPeerConnection,
        RTCSessionDescription,
    )

__all__ = [
    "ECHO_PREFIX",
    "build_parser",
    "main",
    "run_peer",
]

log = structlog.get_logger("signaling.peer")

#: Label of the data channel the offerer opens (the web demo uses the same).
CHAT_LABEL: Final = "chat"
#: ``--echo`` answers a text ``T`` with ``ECHO_PREFIX + T`` and never echoes a text that starts with it,
#: so two echoing peers do not bounce a message back and forth forever.
ECHO_PREFIX: Final = "echo:"
#: A waiting (non-initiator) side that got no offer after this long offers itself (as web/call.js does).
FALLBACK_OFFER_S: Final = 5.0
#: Bound on closing connections and leaving at shutdown.
SHUTDOWN_TIMEOUT_S: Final = 5.0
_TEXT_LOG_LIMIT: Final = 200

# ----------------------------------------------------------------------------------------------------
# One connection to one remote peer

Op = Callable[[], Awaitable[None]]


def _remote_description(pc: RTCPeerConnection) -> RTCSessionDescription | None:
    """aiortc annotates remoteDescription as always set; it is None until setRemoteDescription."""
    return cast("RTCSessionDescription | None", pc.remoteDescription)


class Signals(Protocol):
    """Relays negotiation messages to another peer of the room (a SignalingClient does)."""

    async def send_offer(self, to: str, sdp: str) -> None: ...

    async def send_answer(self, to: str, sdp: str) -> None: ...

    async def send_candidate(self, to: str, candidate: IceCandidate | None) -> None: ...


@dataclass(frozen=True)
class LinkContext:
    """All that a Link takes from the peer it belongs to."""

    #: Our own peer id: it decides who is polite, and names us in hello texts.
    self_id: str
    #: ``welcome.iceServers``, for every RTCPeerConnection of the link.
    ice_servers: Sequence[IceServer]
    #: Where each connection gets the tracks it sends.
    media: LocalMedia
    #: How offers, answers and candidates reach the remote peer.
    signals: Signals
    #: ``--echo``: answer each text on a data channel.
    echo: bool
    #: ``--hello-interval``: seconds between hello texts on each open channel (0: none).
    hello_interval: float
    #: ``--stats-interval``: seconds between two logs of the frames received on a track.
    stats_interval: float
    #: The file to record what this remote peer sends (None: do not record it).
    record_path: str | None


class Link:
    """The RTCPeerConnection to one remote peer, negotiated with (aiortc-adapted) perfect negotiation."""

    def __init__(self, context: LinkContext, remote: str, *, initiator: bool) -> None:
        self.context = context
        self.remote = remote
        self.polite = context.self_id < remote
        self.initiator = initiator
        self.closed = False
        self.ignore_offer = False
        self.offers_received = 0
        #: Connections replaced by a fresh one (polite side of a glare, dead or restarted remote connection).
        self.replacements = 0
        self._pending_candidates: list[IceCandidate | None] = []
        self._inbox: asyncio.Queue[Op] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()  # tied to the current pc: consumers, hello senders
        self._local_tracks: list[MediaStreamTrack] = []
        self._recording = Recording(context.record_path) if context.record_path is not None else None
        self.log = log.bind(peer=remote)
        self.pc = self._new_pc(offerer=initiator)
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"link-{remote}")
        self._fallback: asyncio.TimerHandle | None = None
        if initiator:
            self.post(self._make_offer)
        else:
            self._fallback = asyncio.get_running_loop().call_later(FALLBACK_OFFER_S, self.post, self._fallback_offer)
        self.log.info("link_created", initiator=initiator, polite=self.polite)

    # ------------------------------------------------------------------ plumbing

    def post(self, op: Op) -> None:
        """Run ``op`` on this link's worker, after everything posted before it."""
        if not self.closed:
            self._inbox.put_nowait(op)

    def handle(self, msg: RelayedOffer | RelayedAnswer | RelayedCandidate) -> None:
        """Queue one signaling message from the remote peer."""
        if isinstance(msg, RelayedOffer):
            self.post(lambda: self._on_offer(msg.sdp))
        elif isinstance(msg, RelayedAnswer):
            self.post(lambda: self._on_answer(msg.sdp))
        else:
            self.post(lambda: self._on_candidate(msg.candidate))

    async def _work(self) -> None:
        while True:
            op = await self._inbox.get()
            try:
                await op()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # One bad offer or candidate must not end the link: log it, keep serving later messages.
                self.log.warning("negotiation_error", error=f"{type(exc).__name__}: {exc}")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ the RTCPeerConnection

    def _new_pc(self, *, offerer: bool) -> RTCPeerConnection:
        """A connection with our handlers; an offerer's also gets its media and the "chat" channel now.

        An answerer's gets its tracks only once the offer is applied (:meth:`_add_tracks_for_offer`): aiortc
        cannot answer when a local track has no m-line in the offer.
        """
        from aiortc import RTCConfiguration, RTCPeerConnection

        pc = RTCPeerConnection(RTCConfiguration(iceServers=rtc_ice_servers(self.context.ice_servers)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc is self.pc:
                self.log.info("peer_state", state=pc.connectionState)
                if pc.connectionState == "connected":
                    self._spawn(self._start_recorder(), f"recorder-{self.remote}")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if pc is self.pc:
                self._on_track(track)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if pc is self.pc:
                self._attach_channel(channel)

        if offerer:
            self._add_offer_media(pc)
        return pc

    def _add_offer_media(self, pc: RTCPeerConnection) -> None:
        """Our tracks, receive-only m-lines for kinds we do not send (so we still get theirs), and "chat"."""
        for kind in ("audio", "video"):
            track = self.context.media.track(kind)
            if track is None:
                pc.addTransceiver(kind, direction="recvonly")
            else:
                self._local_tracks.append(track)
                pc.addTrack(track)
        self._attach_channel(pc.createDataChannel(CHAT_LABEL))

    def _add_tracks_for_offer(self, pc: RTCPeerConnection) -> None:
        """After an offer is applied: send our media on the audio/video m-lines it has that carry none yet."""
        sending = {t.kind for t in self._local_tracks}
        for transceiver in pc.getTransceivers():
            kind = transceiver.kind
            has_track = cast("MediaStreamTrack | None", transceiver.sender.track) is not None  # typed as always set
            if transceiver.mid is None or has_track or kind in sending:
                continue
            track = self.context.media.track(kind)
            if track is not None:
                self._local_tracks.append(track)
                sending.add(kind)
                pc.addTrack(track)  # aiortc reuses this transceiver (same kind, no track) and makes it sendrecv

    async def _replace_pc(self) -> None:
        """aiortc's stand-in for rollback: drop the un-answered connection and start over as answerer."""
        old = self.pc
        self.replacements += 1
        await self._drop_pc_state()
        self.pc = self._new_pc(offerer=False)
        await old.close()

    async def _drop_pc_state(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        if self._recording is not None:
            await self._recording.stop()
        for track in self._local_tracks:
            track.stop()
        self._local_tracks = []
        self._pending_candidates.clear()

    async def close(self) -> None:
        """Close the connection and everything attached to it (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self._fallback is not None:
            self._fallback.cancel()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        await self._drop_pc_state()
        await self.pc.close()
        self.log.info("peer_closed")

    # ------------------------------------------------------------------ negotiation

    async def _make_offer(self) -> None:
        pc = self.pc
        if self.closed or pc.signalingState != "stable":
            return
        await pc.setLocalDescription(await pc.createOffer())
        if pc is not self.pc:
            return
        await self.context.signals.send_offer(self.remote, pc.localDescription.sdp)
        self.log.info("offer_sent")
        await self._trickle(pc)

    async def _fallback_offer(self) -> None:
        self._fallback = None
        pc = self.pc
        if self.offers_received or _remote_description(pc) is not None or pc.signalingState != "stable":
            return
        self.log.info("fallback_offer", waited_s=FALLBACK_OFFER_S)
        self.initiator = True
        self._add_offer_media(pc)
        await self._make_offer()

    async def _on_offer(self, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        self.offers_received += 1
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        pc = self.pc
        if pc.signalingState == "closed" or pc.connectionState in ("closed", "failed"):
            # The old connection is over (the remote closed it, or ICE failed, which aiortc cannot restart):
            # whatever this offer is, it can only be answered by a new connection.
            self.log.info("offer_for_dead_connection", state=pc.connectionState, action="replace_connection")
            await self._replace_pc()
        collision = self.pc.signalingState != "stable"
        if collision and not self.polite:
            self.ignore_offer = True
            self.log.info("glare", action="ignore_offer")
            return
        self.ignore_offer = False
        current = _remote_description(self.pc)
        if collision:
            self.log.info("glare", action="replace_connection")
            await self._replace_pc()
        elif current is not None and fingerprints(sdp).isdisjoint(fingerprints(current.sdp)):
            # A new DTLS certificate: the remote side started over with a new RTCPeerConnection (a browser
            # after a failed link, say). aiortc cannot restart ICE/DTLS on the old one, so start over too.
            self.log.info("remote_restarted", action="replace_connection")
            await self._replace_pc()
        pc = self.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._add_tracks_for_offer(pc)
        await self._apply_pending_candidates()
        await pc.setLocalDescription(await pc.createAnswer())
        if pc is not self.pc or self.closed:
            return
        await self.context.signals.send_answer(self.remote, pc.localDescription.sdp)
        self.log.info("answer_sent")
        await self._trickle(pc)

    async def _on_answer(self, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        pc = self.pc
        if pc.signalingState != "have-local-offer":
            self.log.info("answer_ignored", signaling_state=pc.signalingState)
            return
        self.ignore_offer = False
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self.log.info("answer_applied")
        await self._apply_pending_candidates()

    async def _on_candidate(self, init: IceCandidate | None) -> None:
        if self.ignore_offer:
            return  # they belong to the offer we ignored
        if _remote_description(self.pc) is None:
            self._pending_candidates.append(init)
            return
        await self._add_candidate(init)

    async def _apply_pending_candidates(self) -> None:
        pending, self._pending_candidates = self._pending_candidates, []
        for init in pending:
            await self._add_candidate(init)

    async def _add_candidate(self, init: IceCandidate | None) -> None:
        if init is None:
            await self.pc.addIceCandidate(None)
            return
        if not init["candidate"]:
            return  # the legacy per-m-line end marker; end of candidates comes as null
        try:
            candidate = candidate_from_init(init)
        except (AssertionError, ValueError, IndexError) as exc:
            self.log.warning("candidate_rejected", error=str(exc) or type(exc).__name__)
            return
        await self.pc.addIceCandidate(candidate)

    async def _trickle(self, pc: RTCPeerConnection) -> None:
        """Send the candidates aiortc put into the SDP as trickled ones too, then end-of-candidates."""
        candidates = sdp_candidates(pc.localDescription.sdp)
        for init in candidates:
            await self.context.signals.send_candidate(self.remote, init)
        await self.context.signals.send_candidate(self.remote, None)
        self.log.debug("candidates_sent", count=len(candidates))

    # ------------------------------------------------------------------ media received

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.log.info("track_received", kind=track.kind)
        source = track if self._recording is None else self._recording.tap(track)
        interval = self.context.stats_interval
        self._spawn(consume(source, track.kind, self.log, interval), f"consume-{track.kind}-{self.remote}")

    async def _start_recorder(self) -> None:
        if self._recording is not None and await self._recording.start():
            self.log.info("recording", file=self._recording.path)

    # ------------------------------------------------------------------ data channels

    def _attach_channel(self, channel: RTCDataChannel) -> None:
        opened = False

        def on_open() -> None:
            nonlocal opened
            if opened:
                return
            opened = True
            self.log.info("datachannel_open", label=channel.label)
            if self.context.hello_interval > 0:
                self._spawn(self._say_hello(channel), f"hello-{self.remote}")

        def on_message(message: str | bytes) -> None:
            if isinstance(message, str):
                self.log.info("datachannel_message", label=channel.label, text=message[:_TEXT_LOG_LIMIT])
                if self.context.echo and not message.startswith(ECHO_PREFIX) and channel.readyState == "open":
                    channel.send(ECHO_PREFIX + message)
            else:
                self.log.info("datachannel_message", label=channel.label, bytes=len(message))

        def on_close() -> None:
            self.log.info("datachannel_closed", label=channel.label)

        channel.on("message", on_message)
        channel.on("close", on_close)
        channel.on("open", on_open)
        if channel.readyState == "open":  # a channel from the datachannel event is open already
            on_open()

    async def _say_hello(self, channel: RTCDataChannel) -> None:
        n = 0
        while channel.readyState in ("connecting", "open"):
            if channel.readyState == "open":
                n += 1
                text = f"hello from {self.context.self_id} #{n}"
                channel.send(text)
                self.log.info("datachannel_sent", label=channel.label, text=text)
            await asyncio.sleep(self.context.hello_interval)


# ----------------------------------------------------------------------------------------------------
# The peer: signaling session plus one Link per remote peer


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
                media=self.media,
                signals=self.client,
                echo=self.options.echo,
                hello_interval=self.options.hello_interval,
                stats_interval=self.options.stats_interval,
                record_path=self._record_path_for(remote),
            )
            link = self.links[remote] = Link(context, remote, initiator=initiator)
        return link

    async def drop(self, remote: str) -> None:
        link = self.links.pop(remote, None)
        if link is not None:
            await link.close()
            self._release_record_path(remote)

    async def run(self, stop: asyncio.Event) -> int:
        """Join, then serve signaling until ``stop`` is set (0) or the signaling connection ends (1)."""
        opts = self.options
        try:
            welcome = await self.client.join(opts.room, name=opts.name, meta={"agent": "signaling-peer"})
        except SignalingErrorReply as exc:
            log.error("join_failed", code=exc.code, message=exc.message)
            return 1
        self.id = welcome.peer
        self.ice_servers = list(welcome.iceServers)
        log.info(
            "joined",
            self_id=self.id,
            room=welcome.room,
            peers=[p.peer for p in welcome.peers],
            ice_servers=len(self.ice_servers),
        )
        for info in welcome.peers:
            self.link(info.peer, initiator=True)  # we are the newcomer: we offer
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

    async def _serve_signals(self) -> None:
        async for msg in self.client:
            await self._dispatch(msg)

    async def _dispatch(self, msg: ServerMessage) -> None:
        if isinstance(msg, RelayedOffer | RelayedAnswer | RelayedCandidate):
            # An offer can come before peer-joined only from a peer we have not heard of yet: it starts.
            self.link(msg.from_, initiator=False).handle(msg)
        elif isinstance(msg, PeerJoined):
            log.info("peer_joined", peer=msg.peer, name=msg.name)
            self.link(msg.peer, initiator=False)  # the newcomer offers; we wait for it
        elif isinstance(msg, PeerLeft):
            log.info("peer_left", peer=msg.peer)
            await self.drop(msg.peer)
            log.info("links", count=len(self.links))
        elif isinstance(msg, RelayedMessage):
            log.info("signaling_message", peer=msg.from_, data=str(msg.data)[:_TEXT_LOG_LIMIT])
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
        client = await SignalingClient.connect(options.url, ssl=ssl_context)
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


# ----------------------------------------------------------------------------------------------------
# Command line

_DESCRIPTION = """\
A headless WebRTC peer (aiortc). It joins ROOM on the signaling server and connects to every other peer
there, browsers included: the newcomer offers, the other side answers (and offers itself after 5 s without
an offer), with the perfect-negotiation pattern (the peer whose id sorts first is polite). It sends a moving
test pattern and a tone (or --play FILE), opens a data channel "chat" when it offers, receives and decodes
what the others send, and logs its progress."""

_EPILOG = """\
ICE: the ICE servers are exactly welcome.iceServers from the server (none: host candidates only; never a
public STUN default). aiortc puts all its candidates in the SDP; they are also sent as trickled `candidate`
messages, then `candidate: null`. Trickled remote candidates are accepted.

Logs (JSON lines unless stdout is a terminal), one event per line, e.g.:
  joined self_id=ID peers=[...]        peer_state peer=ID state=connected
  frames_received peer=ID count=N pattern_frame=K   (decoded video frames; K: the sender's test-pattern
                                                     frame counter read from the picture, null if none)
  audio_received peer=ID count=N      datachannel_message peer=ID text=...
  peer_left peer=ID, then peer_closed peer=ID and links count=N

Exit status: 0 after --duration or SIGINT/SIGTERM (connections closed, room left); 1 if the server refused
the join or the signaling connection ended; 2 for bad arguments.

Example: signaling peer --url ws://127.0.0.1:8765/ws --room demo --echo --host-address 127.0.0.1"""


def _video_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < PATTERN_MIN_WIDTH or h < PATTERN_MIN_HEIGHT or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"must be even and at least {PATTERN_MIN_WIDTH}x{PATTERN_MIN_HEIGHT}")
    return w, h


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="signaling peer",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", required=True, help="signaling WebSocket URL, e.g. ws://127.0.0.1:8765/ws")
    p.add_argument("--room", required=True, help="room to join (1-64 of A-Z a-z 0-9 _ -)")
    p.add_argument("--name", default="aiortc-peer", help="display name sent with join (default: %(default)s)")
    media = p.add_argument_group("media")
    media.add_argument("--play", metavar="FILE", help="send this media file (audio/video) instead of the pattern")
    media.add_argument("--loop", action="store_true", help="with --play: repeat the file forever")
    media.add_argument(
        "--record",
        metavar="FILE",
        help="record what is received (format from the extension, e.g. .mp4, .webm, .wav); "
        "'{peer}' in FILE gives one file per remote peer, otherwise only the first peer is recorded",
    )
    media.add_argument(
        "--video-size",
        type=_video_size,
        default=(320, 240),
        metavar="WxH",
        help="size of the test pattern (default: 320x240)",
    )
    media.add_argument("--fps", type=_positive, default=15.0, help="frame rate of the test pattern (default: 15)")
    media.add_argument("--tone", type=_positive, default=440.0, metavar="HZ", help="tone frequency (default: 440)")
    data = p.add_argument_group("data channel")
    data.add_argument(
        "--echo",
        action="store_true",
        help=f"answer each text message T with '{ECHO_PREFIX}T' (texts starting with '{ECHO_PREFIX}' are not echoed)",
    )
    data.add_argument(
        "--hello-interval",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="send 'hello from <id> #n' on each open channel every S seconds (default: 0, off)",
    )
    net = p.add_argument_group("network")
    net.add_argument(
        "--host-address",
        dest="host_addresses",
        action="append",
        type=_address,
        default=[],
        metavar="IP",
        help="gather host candidates on this address only (repeatable; 127.0.0.1 allowed). "
        "Default: every non-loopback address",
    )
    net.add_argument("--cafile", metavar="PEM", help="CA bundle to verify a wss:// server with")
    run = p.add_argument_group("run")
    run.add_argument("--duration", type=_positive, metavar="S", help="leave and exit after S seconds")
    run.add_argument(
        "--stats-interval",
        type=_positive,
        default=1.0,
        metavar="S",
        help="seconds between frames_received/audio_received lines per track (default: 1)",
    )
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    run.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto",
        help="auto: JSON lines unless stdout is a terminal (default: auto)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``signaling peer`` (``signaling.cli`` hands over the arguments after ``peer``)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not HAVE_AIORTC:
        print("signaling peer needs aiortc: pip install 'signaling[peer]'", file=sys.stderr)
        return 2
    from signaling.logs import configure_logging

    log_format: Literal["auto", "json", "console"] = args.log_format
    configure_logging(args.log_level, log_format)
    if args.play and not Path(args.play).exists() and "://" not in args.play:
        print(f"signaling peer: --play: no such file: {args.play}", file=sys.stderr)
        return 2
    options = PeerOptions(
        url=args.url,
        room=args.room,
        name=args.name,
        play=args.play,
        loop=args.loop,
        record=args.record,
        echo=args.echo,
        host_addresses=args.host_addresses,
        duration=args.duration,
        hello_interval=args.hello_interval,
        stats_interval=args.stats_interval,
        video_size=args.video_size,
        fps=args.fps,
        tone=args.tone,
        cafile=args.cafile,
    )
    try:
        return asyncio.run(run_peer(options))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130

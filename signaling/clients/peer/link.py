"""One :class:`Link` per remote peer: its RTCPeerConnection, negotiated with perfect negotiation adapted to aiortc.

A link gets what it needs from its peer through a :class:`LinkContext` and knows nothing else of it.

Design notes (the why behind the code):

* Roles follow web/peer-link.js so that aiortc and browser peers agree without extra messages: the *newcomer* (who
  finds the other in its ``welcome``) makes the first offer; the other waits, and offers itself only if nothing
  came within ``FALLBACK_OFFER_S``. The peer whose id sorts first is *polite*.
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

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, cast

import structlog

from signaling.clients.peer.media import LocalMedia, Recording, consume
from signaling.clients.peer.sdp import candidate_from_init, fingerprints, rtc_ice_servers, sdp_candidates
from signaling.protocol.models import IceCandidate, IceServer, RelayedAnswer, RelayedCandidate, RelayedOffer

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

__all__ = ["CHAT_LABEL", "ECHO_PREFIX", "FALLBACK_OFFER_S", "TEXT_LOG_LIMIT", "Link", "LinkContext", "Signals"]

log = structlog.get_logger("signaling.peer")

#: Label of the data channel the offerer opens (the web demo uses the same).
CHAT_LABEL: Final = "chat"
#: ``--echo`` answers a text ``T`` with ``ECHO_PREFIX + T`` and never echoes a text that starts with it,
#: so two echoing peers do not bounce a message back and forth forever.
ECHO_PREFIX: Final = "echo:"
#: A waiting (non-initiator) side that got no offer after this long offers itself (as web/peer-link.js does).
FALLBACK_OFFER_S: Final = 5.0
#: Logged texts (data channel, relayed messages) are cut to this many characters.
TEXT_LOG_LIMIT: Final = 200

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
    #: ``welcome.iceServers`` (kept current by ``ice-servers`` updates), for every RTCPeerConnection of the link.
    ice_servers: Sequence[IceServer]
    #: ``--relay-only``: gather and use TURN relay candidates only (iceTransportPolicy "relay").
    relay_only: bool
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
    #: Called with the remote peer's id when its connection fails or the remote closes it (aiortc cannot
    #: restart ICE).
    on_failed: Callable[[str], None] | None = None


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
        from aiortc import RTCConfiguration, RTCIceTransportPolicy, RTCPeerConnection

        policy = RTCIceTransportPolicy.RELAY if self.context.relay_only else RTCIceTransportPolicy.ALL
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=rtc_ice_servers(self.context.ice_servers), iceTransportPolicy=policy)
        )

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc is self.pc:
                self.log.info("peer_state", state=pc.connectionState)
                if pc.connectionState == "connected":
                    self._spawn(self._start_recorder(), f"recorder-{self.remote}")
                elif pc.connectionState in ("failed", "closed") and not self.closed and self.context.on_failed:
                    self.context.on_failed(self.remote)  # closed: the remote ended DTLS, not us

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
        if not candidates:
            # aiortc gathers silently: without this line, TURN credentials coturn refuses look like a hang.
            self.log.error(
                "no_local_candidates",
                relay_only=self.context.relay_only,
                ice_servers=len(self.context.ice_servers),
                hint="with --relay-only: is a TURN server in welcome.iceServers, and does it accept the credentials?",
            )
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
                self.log.info("datachannel_message", label=channel.label, text=message[:TEXT_LOG_LIMIT])
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

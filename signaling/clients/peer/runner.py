"""``signaling peer``: a headless aiortc WebRTC peer that joins a room and connects to everyone there.

It is the project's reference peer: a test tool (it logs machine-readable progress), a load and interop
partner for browsers, and an example of driving aiortc through the signaling protocol. The negotiation with
each remote peer is in :mod:`signaling.clients.peer.link`.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import structlog

from signaling.clients.peer.link import ECHO_PREFIX, TEXT_LOG_LIMIT, Link, LinkContext
from signaling.clients.peer.media import HAVE_AIORTC, PATTERN_MIN_HEIGHT, PATTERN_MIN_WIDTH, LocalMedia
from signaling.clients.peer.options import PeerOptions
from signaling.clients.peer.sdp import restrict_host_addresses
from signaling.clients.signaling_client import SignalingClient, SignalingErrorReply
from signaling.protocol.models import (
    ErrorMessage,
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

__all__ = ["Peer", "build_parser", "main", "run_peer"]

log = structlog.get_logger("signaling.peer")

#: Bound on closing connections and leaving at shutdown.
SHUTDOWN_TIMEOUT_S: Final = 5.0

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
            log.info("signaling_message", peer=msg.from_, data=str(msg.data)[:TEXT_LOG_LIMIT])
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

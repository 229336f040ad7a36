"""The command line of ``signaling peer``: its parser, and :func:`main`, which turns it into :class:`PeerOptions`."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from signaling.clients.peer.link import ECHO_PREFIX
from signaling.clients.peer.media import HAVE_AIORTC, PATTERN_MIN_HEIGHT, PATTERN_MIN_WIDTH
from signaling.clients.peer.options import PeerOptions
from signaling.clients.peer.runner import run_peer

__all__ = ["build_parser", "main"]

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


def _finite(text: str, *, zero_ok: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isinf(value) or not (value >= 0 if zero_ok else value > 0):
        wanted = "zero or a positive number" if zero_ok else "a positive number"
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
    return value


def _positive(text: str) -> float:
    return _finite(text, zero_ok=False)


def _non_negative(text: str) -> float:
    return _finite(text, zero_ok=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="signaling peer",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--url",
        required=True,
        help="signaling WebSocket URL, e.g. ws://127.0.0.1:8765/ws; several comma-separated (server nodes): "
        "after a drop the session resumes on the next",
    )
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
    net.add_argument(
        "--token",
        help="room token for a server with room tokens on (default: SIGNALING_TOKEN; arguments show in ps)",
    )
    net.add_argument(
        "--relay-only",
        action="store_true",
        help="use TURN relay candidates only (iceTransportPolicy relay): needs TURN in welcome.iceServers",
    )
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
    """Entry point of ``signaling peer`` (``signaling.app.cli`` hands over the arguments after ``peer``)."""
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
        token=args.token or os.environ.get("SIGNALING_TOKEN"),
        relay_only=args.relay_only,
    )
    try:
        return asyncio.run(run_peer(options))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130

"""Media: what a peer sends (a test pattern the receiver can recognize, a tone, or a file) and receives.

The pattern's first 16 pixel rows are a barcode of 20 blocks of 16x16 pixels (aligned to codec macroblocks,
black or white, so lossy coding keeps them readable): 4 sync blocks, then the sender's frame counter in 16
bits. Below it a gradient with a bar that moves 4 pixels a frame. A receiver that decodes the barcode
(:func:`decode_pattern`) knows both that it gets *this* pattern and that the picture changes over time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import time
from array import array
from typing import TYPE_CHECKING, Final

from signaling.clients.peer.options import PeerOptions

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack
    from aiortc.contrib.media import MediaPlayer, MediaRecorder, MediaRelay
    from av import AudioFrame, VideoFrame
    from structlog.typing import FilteringBoundLogger

__all__ = [
    "HAVE_AIORTC",
    "PATTERN_MIN_HEIGHT",
    "PATTERN_MIN_WIDTH",
    "LocalMedia",
    "PatternVideoTrack",
    "Recording",
    "ToneAudioTrack",
    "consume",
    "decode_pattern",
]

try:
    from aiortc import MediaStreamTrack as _TrackBase

    HAVE_AIORTC = True
except ImportError:  # the `peer` extra is not installed: main() says so instead of a traceback
    _TrackBase = object  # type: ignore[misc,assignment]
    HAVE_AIORTC = False

_BLOCK: Final = 16
_SYNC: Final = (True, False, False, True)
_COUNTER_BITS: Final = 16
_PATTERN_BLOCKS: Final = len(_SYNC) + _COUNTER_BITS
PATTERN_MIN_WIDTH: Final = _PATTERN_BLOCKS * _BLOCK  # 320
PATTERN_MIN_HEIGHT: Final = 4 * _BLOCK
_BLACK: Final = 16
_WHITE: Final = 235
_VIDEO_CLOCK: Final = 90000


def _pad(row: bytes, size: int) -> bytes:
    return row + bytes(size - len(row)) if len(row) < size else row


def _barcode_bits(counter: int) -> list[bool]:
    value = counter % (1 << _COUNTER_BITS)
    return [*_SYNC, *((value >> (_COUNTER_BITS - 1 - i)) & 1 == 1 for i in range(_COUNTER_BITS))]


def decode_pattern(frame: VideoFrame) -> int | None:
    """The frame counter of a received :class:`PatternVideoTrack` frame, or None if it is not one."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    if frame.width < PATTERN_MIN_WIDTH or frame.height < _BLOCK:
        return None
    plane = frame.planes[0]
    stride = plane.line_size
    data = memoryview(plane).cast("B")
    bits: list[bool] = []
    for block in range(_PATTERN_BLOCKS):
        x0 = block * _BLOCK + 4  # the block's inner 8x8 pixels: away from edges the codec blurs
        total = sum(sum(data[y * stride + x0 : y * stride + x0 + 8]) for y in range(4, 12))
        bits.append(total / 64 > (_BLACK + _WHITE) / 2)
    if tuple(bits[: len(_SYNC)]) != _SYNC:
        return None
    value = 0
    for bit in bits[len(_SYNC) :]:
        value = (value << 1) | int(bit)
    return value


class _Pacer:
    """Real-time pacing for synthetic tracks: frame ``n`` is due at ``start + n * period``."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.start: float | None = None
        self.index = -1

    async def next(self) -> int:
        self.index += 1
        now = time.monotonic()
        if self.start is None:
            self.start = now
        else:
            wait = self.start + self.index * self.period - now
            if wait > 0:
                await asyncio.sleep(wait)
        return self.index


class PatternVideoTrack(_TrackBase):
    """A moving test pattern (see the barcode notes in the module docstring), made without numpy."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: float = 15.0) -> None:
        super().__init__()
        if width < PATTERN_MIN_WIDTH or height < PATTERN_MIN_HEIGHT or width % 2 or height % 2:
            raise ValueError(f"video size must be even and at least {PATTERN_MIN_WIDTH}x{PATTERN_MIN_HEIGHT}")
        self.width = width
        self.height = height
        self.fps = fps
        self._pacer = _Pacer(1.0 / fps)
        self._gradient = bytes(_BLACK + (x * 164) // width for x in range(width))
        cw = width // 2
        self._u_row = bytes(64 + (x * 128) // cw for x in range(cw))

    async def recv(self) -> VideoFrame:
        from aiortc.mediastreams import MediaStreamError

        if self.readyState != "live":
            raise MediaStreamError
        n = await self._pacer.next()
        frame = self.render(n)
        frame.pts = int(n * _VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, _VIDEO_CLOCK)
        return frame

    def render(self, n: int) -> VideoFrame:
        """Frame ``n`` of the pattern as a yuv420p av.VideoFrame."""
        import av

        w, h = self.width, self.height
        frame = av.VideoFrame(w, h, "yuv420p")
        y_plane, u_plane, v_plane = frame.planes
        bits = _barcode_bits(n)
        code = b"".join(bytes([_WHITE if bit else _BLACK]) * _BLOCK for bit in bits)
        code += bytes([128]) * (w - len(code))
        bar = (n * 4) % (w - _BLOCK)
        body = bytearray(self._gradient)
        body[bar : bar + _BLOCK] = bytes([_WHITE]) * _BLOCK
        ys = y_plane.line_size
        y_plane.update(_pad(code, ys) * _BLOCK + _pad(bytes(body), ys) * (h - _BLOCK))
        cw, ch, cs = w // 2, h // 2, u_plane.line_size
        neutral = _pad(bytes([128]) * cw, cs)
        top = _BLOCK // 2
        u_plane.update(neutral * top + _pad(self._u_row, cs) * (ch - top))
        v = 128 + int(60 * math.sin(2 * math.pi * n / (4 * self.fps)))  # the hue drifts with time too
        v_plane.update(neutral * top + _pad(bytes([v]) * cw, cs) * (ch - top))
        return frame


class ToneAudioTrack(_TrackBase):
    """A sine tone, 48 kHz mono s16 in 20 ms frames."""

    kind = "audio"
    RATE: Final = 48000
    SAMPLES: Final = 960

    def __init__(self, frequency: float = 440.0, volume: float = 0.2) -> None:
        super().__init__()
        # One second of samples; an integral frequency loops seamlessly over it.
        amplitude = int(32767 * volume)
        samples = array(
            "h", (int(amplitude * math.sin(2 * math.pi * frequency * i / self.RATE)) for i in range(self.RATE))
        )
        self._second = samples.tobytes()
        self._pacer = _Pacer(self.SAMPLES / self.RATE)

    async def recv(self) -> AudioFrame:
        import av
        from aiortc.mediastreams import MediaStreamError

        if self.readyState != "live":
            raise MediaStreamError
        n = await self._pacer.next()
        offset = (n * self.SAMPLES) % self.RATE * 2
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(self._second[offset : offset + self.SAMPLES * 2])
        frame.pts = n * self.SAMPLES
        frame.sample_rate = self.RATE
        frame.time_base = fractions.Fraction(1, self.RATE)
        return frame


class LocalMedia:
    """The tracks each new connection sends: fresh synthetic ones, or a shared file via MediaRelay."""

    def __init__(self, options: PeerOptions) -> None:
        self.options = options
        self._player: MediaPlayer | None = None
        self._relay: MediaRelay | None = None
        if options.play:
            from aiortc.contrib.media import MediaPlayer, MediaRelay

            self._player = MediaPlayer(options.play, loop=options.loop)
            self._relay = MediaRelay()

    def track(self, kind: str) -> MediaStreamTrack | None:
        """A new track of ``kind`` ("audio"/"video") for one RTCPeerConnection; None if there is no such media.

        Each connection gets its own synthetic track (one consumer per track: an encoder pulling frames); a
        file is decoded once and fanned out through MediaRelay.
        """
        if self._player is not None and self._relay is not None:
            source = self._player.audio if kind == "audio" else self._player.video
            return self._relay.subscribe(source, buffered=False) if source is not None else None
        if kind == "audio":
            return ToneAudioTrack(self.options.tone)
        width, height = self.options.video_size
        return PatternVideoTrack(width, height, self.options.fps)

    def close(self) -> None:
        if self._player is not None:
            for track in (self._player.audio, self._player.video):
                if track is not None:
                    track.stop()


# ----------------------------------------------------------------------------------------------------
# Media received


class Recording:
    """``--record`` for one connection: what it receives goes into one file, written once it is connected.

    The MediaRecorder (which opens the file) is made for the first track received; after :meth:`stop` the
    tracks of a replacing connection make a new one on the same path.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._recorder: MediaRecorder | None = None

    def tap(self, track: MediaStreamTrack) -> MediaStreamTrack:
        """Record ``track``; read the returned copy instead (a track has one reader: both go through a relay)."""
        from aiortc.contrib.media import MediaRecorder, MediaRelay

        relay = MediaRelay()
        if self._recorder is None:
            self._recorder = MediaRecorder(self.path)
        self._recorder.addTrack(relay.subscribe(track, buffered=False))
        return relay.subscribe(track, buffered=False)

    async def start(self) -> bool:
        """Start writing; False if no track came to record."""
        if self._recorder is None:
            return False
        await self._recorder.start()
        return True

    async def stop(self) -> None:
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            with contextlib.suppress(Exception):
                await recorder.stop()


async def consume(track: MediaStreamTrack, kind: str, log: FilteringBoundLogger, interval: float) -> None:
    """Read (and so decode) every received frame, logging counts; proves media really arrives."""
    from aiortc.mediastreams import MediaStreamError
    from av import AudioFrame, VideoFrame

    count = 0
    last_log = 0.0
    event = "frames_received" if kind == "video" else "audio_received"
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            break
        count += 1
        now = time.monotonic()
        if count == 1 or now - last_log >= interval:
            last_log = now
            if isinstance(frame, VideoFrame):
                log.info(
                    event,
                    count=count,
                    width=frame.width,
                    height=frame.height,
                    pattern_frame=decode_pattern(frame),
                )
            elif isinstance(frame, AudioFrame):
                log.info(event, count=count, sample_rate=frame.sample_rate)
    log.info("track_ended", kind=kind, count=count)

"""A message arriving in pieces (fragments, or one frame split across reads): kept, validated, and bounded.

Text is validated as it arrives, so invalid UTF-8 fails the connection at once rather than when the message
ends; the size and the fragment count are checked before a frame's payload is kept; and the pieces are joined
now and then, so an unfinished message holds little more than its own size.
"""

from __future__ import annotations

import codecs

from .events import BinaryMessage, TextMessage
from .exceptions import InvalidUtf8, MessageTooBig

__all__ = ["MessageAssembly"]

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
#: Pieces kept before they are joined: each costs an object header (about 50 bytes; a 1-byte fragment would
#: cost 50 times its payload).
_COMPACT_AT = 64


class MessageAssembly:
    """One message being put together; ``text`` decides whether pieces are decoded as they come."""

    __slots__ = ("_decoder", "_parts", "frames", "size")

    def __init__(self, text: bool) -> None:
        self.size = 0
        self.frames = 0
        self._parts: list[str] | list[bytes] = []
        self._decoder = _Utf8Decoder() if text else None

    def add_frame(self, length: int, max_size: int, max_frames: int) -> None:
        """Account for one more frame of ``length`` bytes before any of its payload is kept."""
        if self.size + length > max_size:
            raise MessageTooBig(f"fragmented message of over {self.size + length} bytes, limit {max_size}")
        self.frames += 1
        if self.frames > max_frames:
            raise MessageTooBig(f"message in over {max_frames} frames")

    def add(self, chunk: bytes) -> None:
        """Keep one unmasked piece of payload; text is validated as it arrives."""
        self.size += len(chunk)
        decoder = self._decoder
        parts = self._parts
        if decoder is not None:
            try:
                text = decoder.decode(chunk, False)
            except UnicodeDecodeError as exc:
                raise InvalidUtf8(f"invalid UTF-8 in a text message: {exc.reason}") from None
            # CPython waits for a third byte after ED A0..BF, though it can only be a surrogate: fail now.
            pending = decoder.getstate()[0]
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise InvalidUtf8("invalid UTF-8 in a text message: encoded surrogate")
            if text:
                parts.append(text)  # type: ignore[arg-type]
                if len(parts) >= _COMPACT_AT:
                    self._parts = ["".join(parts)]  # type: ignore[arg-type]
        else:
            parts.append(chunk)  # type: ignore[arg-type]
            if len(parts) >= _COMPACT_AT:
                self._parts = [b"".join(parts)]  # type: ignore[arg-type]

    def finish(self) -> TextMessage | BinaryMessage:
        decoder = self._decoder
        if decoder is not None:
            try:
                tail = decoder.decode(b"", True)
            except UnicodeDecodeError:
                raise InvalidUtf8("text message ends inside a UTF-8 sequence") from None
            return TextMessage("".join(self._parts) + tail)  # type: ignore[arg-type]
        return BinaryMessage(b"".join(self._parts))  # type: ignore[arg-type]

"""The messages a resumable session keeps: numbered, the most recent ones, bounded in count and in bytes.

Every room message the server sends such a peer gets the next ``seq`` and stays here, sent or not yet sent, until
newer ones push it out; a client that resumes with ``last_seq`` is replayed everything after it, messages written
to a socket that died in flight included.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["DEFAULT_KEPT_BYTES", "DEFAULT_KEPT_COUNT", "KeptMessages", "numbered", "numbering"]

DEFAULT_KEPT_COUNT: Final = 512
DEFAULT_KEPT_BYTES: Final = 1024 * 1024


def numbering(text: str) -> tuple[str, str]:
    """What goes before and after the number when ``text`` (a JSON object) gets ``"seq"`` as its last field: for
    a store that gives the number itself (the cluster's, in Redis)."""
    return text[:-1] + ',"seq":', "}"


def numbered(text: str, seq: int) -> str:
    """``text`` (a JSON object) with ``"seq": seq`` added as its last field."""
    head, tail = numbering(text)
    return head + str(seq) + tail


class KeptMessages:
    """One session's kept messages and its next sequence number."""

    __slots__ = ("_bytes", "_messages", "max_bytes", "max_count", "seq")

    def __init__(self, max_count: int = DEFAULT_KEPT_COUNT, max_bytes: int = DEFAULT_KEPT_BYTES) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        #: The last sequence number given (0: none yet).
        self.seq = 0
        self._messages: deque[tuple[int, str]] = deque()
        self._bytes = 0

    def add(self, text: str) -> str:
        """Number ``text``, keep it, and return it as sent."""
        self.seq += 1
        out = numbered(text, self.seq)
        messages = self._messages
        messages.append((self.seq, out))
        self._bytes += len(out)
        while len(messages) > self.max_count or (self._bytes > self.max_bytes and len(messages) > 1):
            self._bytes -= len(messages.popleft()[1])
        return out

    def after(self, last_seq: int) -> list[str] | None:
        """The kept messages after ``last_seq``, in order; None when they no longer reach back that far (or
        ``last_seq`` is beyond the last message sent): then the session cannot be resumed."""
        if last_seq < 0 or last_seq > self.seq:
            return None
        if last_seq == self.seq:
            return []
        messages = self._messages
        if not messages or messages[0][0] > last_seq + 1:
            return None
        return [text for seq, text in messages if seq > last_seq]

    def __len__(self) -> int:
        return len(self._messages)

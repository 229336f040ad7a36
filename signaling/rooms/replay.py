"""What a resumable session is replayed when it resumes: its numbered room messages, the most recent ones.

Every room message the server sends such a peer gets the next ``seq`` and is kept, sent or not yet sent, until
newer ones push it out (bounded in count and in bytes); a client that resumes with ``last_seq`` is replayed
everything after it, messages written to a socket that died in flight included.

``ReplayStore`` is the interface; ``InMemoryReplay`` serves one process, and signaling/cluster/ has the Redis one,
where numbering and keeping happen inside Redis, in the same step that routes the text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import ClassVar, Final

from signaling.protocol.facts import DEFAULT_RESUME_BUFFER, DEFAULT_RESUME_BUFFER_BYTES

__all__ = ["NUMBER_TAIL", "InMemoryReplay", "KeptMessages", "ReplayStore", "numbered", "numbering", "with_number"]

#: What follows the number in a numbered text (``numbering``): the end of its JSON object.
NUMBER_TAIL: Final = "}"


def numbering(text: str) -> str:
    """What goes before the number when ``text`` (a JSON object) gets ``"seq"`` as its last field (then the
    number, then ``NUMBER_TAIL``): for a store that gives the number itself (the cluster's, in Redis)."""
    return text[:-1] + ',"seq":'


def with_number(head: str, seq: int | str) -> str:
    """The numbered text whose ``numbering`` is ``head``."""
    return head + str(seq) + NUMBER_TAIL


def numbered(text: str, seq: int) -> str:
    """``text`` (a JSON object) with ``"seq": seq`` added as its last field."""
    return with_number(numbering(text), seq)


class ReplayStore(ABC):
    """The kept messages of resumable sessions, bounded by ``kept_count`` messages and ``kept_bytes`` bytes each."""

    #: Whether ``after`` may wait (a round trip): then a session's steps run as tasks rather than inline.
    waits: ClassVar[bool]

    def __init__(
        self, *, kept_count: int = DEFAULT_RESUME_BUFFER, kept_bytes: int = DEFAULT_RESUME_BUFFER_BYTES
    ) -> None:
        self.kept_count = kept_count
        self.kept_bytes = kept_bytes

    @abstractmethod
    def start(self, peer: str) -> None:
        """Keep the messages of ``peer``'s new resumable session, numbered from 1 (before its join is visible)."""

    @abstractmethod
    async def after(self, peer: str, last_seq: int) -> list[str] | None:
        """What ``peer`` was sent after ``last_seq``, as sent, in order; None when that is no longer all there
        (or ``last_seq`` is beyond the last one sent): then the session cannot be resumed.

        Raises:
            SignalingError: ``unavailable`` (the store cannot be reached).
        """

    @abstractmethod
    def forget(self, peer: str) -> None:
        """``peer``'s session is over: drop what was kept for it."""


class KeptMessages:
    """One session's kept messages and its last sequence number."""

    __slots__ = ("_bytes", "_messages", "max_bytes", "max_count", "seq")

    def __init__(self, max_count: int = DEFAULT_RESUME_BUFFER, max_bytes: int = DEFAULT_RESUME_BUFFER_BYTES) -> None:
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
        ``last_seq`` is beyond the last message sent)."""
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


class InMemoryReplay(ReplayStore):
    """The kept messages of one process's resumable sessions; it numbers them too (``number``)."""

    waits = False

    def __init__(
        self, *, kept_count: int = DEFAULT_RESUME_BUFFER, kept_bytes: int = DEFAULT_RESUME_BUFFER_BYTES
    ) -> None:
        super().__init__(kept_count=kept_count, kept_bytes=kept_bytes)
        self._kept: dict[str, KeptMessages] = {}

    def start(self, peer: str) -> None:
        self._kept[peer] = KeptMessages(self.kept_count, self.kept_bytes)

    def number(self, peer: str, text: str) -> tuple[int, str]:
        """``text`` for resumable ``peer``, numbered and kept: ``(seq, text as sent)``; (0, text) when nothing is
        kept for ``peer`` (its session is over)."""
        kept = self._kept.get(peer)
        if kept is None:
            return 0, text
        out = kept.add(text)
        return kept.seq, out

    async def after(self, peer: str, last_seq: int) -> list[str] | None:
        kept = self._kept.get(peer)
        return kept.after(last_seq) if kept is not None else None

    def forget(self, peer: str) -> None:
        self._kept.pop(peer, None)

"""This process's connections and what is handed to them: the one owner of "in order, none twice, none lost".

Whichever backend routed a text (the in-memory one at once, the Redis one from a node channel), it reaches a
connection here through ``Deliveries``, and only here are the delivery rules kept:

- **In order.** Texts reach a sink in the order they are handed over; a sink that is not ready yet (its join or
  resume in flight) has a ``Pending`` buffer in its place, emptied into it in the same order.
- **None twice.** Per recipient, the last ``seq`` handed to its sink is known, and a numbered text at or below it
  is dropped: a resume's replay and a live text may carry the same one (with Redis, the replay comes on one
  connection and the live texts on another, in no fixed order between them).
- **None lost.** A recipient's buffer exists before its join becomes visible to anyone who could address it, and
  before its replay is read: what arrives meanwhile waits, and goes out right after the ``welcome`` (and the
  replay). A text for a peer with neither sink nor buffer here is not for this process: a resumable peer's is kept
  for its replay by the backend, and a plain peer has left.

Numbered texts come in ``seq`` order from their backend; the replay, read after the buffer exists, fills what
the buffer may lack.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from .peers import Logger, PeerSink

__all__ = ["Deliveries", "Pending"]


class Pending:
    """Texts for a peer whose connection is not ready to take them yet: ``(seq, text)``, seq 0 when not numbered."""

    __slots__ = ("taken_over_meanwhile", "texts")

    def __init__(self) -> None:
        self.texts: list[tuple[int, str]] = []
        #: The session was resumed elsewhere while this one was being set up.
        self.taken_over_meanwhile = False

    def deliver(self, text: str) -> None:
        self.texts.append((0, text))

    def taken_over(self) -> None:
        self.taken_over_meanwhile = True

    def removed(self) -> None:
        """Removed while its resume is set up here: that session must not go on either (it is closed, 4001)."""
        self.taken_over_meanwhile = True


class Deliveries:
    """The sinks of this process's members, by peer id, and the last ``seq`` each was handed."""

    __slots__ = ("_last", "_log", "sinks")

    def __init__(self) -> None:
        #: Where texts for each peer go now: its connection, or a buffer while its join or resume is in flight.
        #: Read directly by the relay's hot path (a plain text is ``sinks[peer].deliver(text)``).
        self.sinks: dict[str, PeerSink | Pending] = {}
        self._last: dict[str, int] = {}
        self._log: Logger = structlog.get_logger("signaling.delivery")

    # ------------------------------------------------------------------ a session's steps

    def expect(self, peer: str, last_seq: int = 0) -> PeerSink | None:
        """From now on, texts for ``peer`` wait in a buffer until ``attach``; numbered ones count from ``last_seq``
        (0 for a new session; a resume's ``last_seq``). Returns the connection they went to until now, if any (a
        session resumed while its old connection here is still open), which no longer gets anything."""
        previous = self.sinks.get(peer)
        self.sinks[peer] = Pending()
        self._last[peer] = last_seq
        return None if previous is None or type(previous) is Pending else previous

    def attach(self, peer: str, sink: PeerSink, first: Iterable[str] = (), replay: Iterable[str] = ()) -> bool:
        """``sink`` takes ``peer``'s texts: ``first`` (the ``welcome``), then ``replay`` (the kept texts numbered
        from the ``last_seq`` given to ``expect`` on), then what waited, then live texts. False when the session
        was resumed elsewhere meanwhile (the caller closes this connection)."""
        pending = self.sinks.get(peer)
        self.sinks[peer] = sink
        for text in first:
            sink.deliver(text)
        seq = self._last.get(peer, 0)
        for text in replay:
            seq += 1
            self.deliver_numbered(peer, seq, text)
        if type(pending) is Pending:
            for seq, text in pending.texts:
                if seq:
                    self.deliver_numbered(peer, seq, text)
                else:
                    sink.deliver(text)
            return not pending.taken_over_meanwhile
        return True

    def cancel(self, peer: str, previous: PeerSink | None = None) -> None:
        """The join or resume ``expect`` prepared did not happen: drop its buffer (and give ``previous``, the
        connection ``expect`` displaced, its texts back)."""
        if type(self.sinks.get(peer)) is Pending:
            if previous is not None:
                self.sinks[peer] = previous
            else:
                del self.sinks[peer]
                self._last.pop(peer, None)

    def detach(self, peer: str, sink: PeerSink) -> None:
        """``sink`` is gone (unless the peer has moved to another connection meanwhile)."""
        if self.sinks.get(peer) is sink:
            del self.sinks[peer]
            self._last.pop(peer, None)

    def take_over(self, peer: str) -> None:
        """``peer``'s session was resumed on another node: close its connection here, if any."""
        sink = self.sinks.pop(peer, None)
        if sink is not None:
            if type(sink) is Pending:
                self.sinks[peer] = sink  # its setup is still under way: it learns of it at attach
            else:
                self._last.pop(peer, None)
            sink.taken_over()

    def remove(self, peer: str) -> None:
        """``peer`` was removed by the application's backend (it has left its room): close its connection here."""
        sink = self.sinks.get(peer)
        if sink is not None:
            sink.removed()

    # ------------------------------------------------------------------ texts

    def deliver(self, peer: str, text: str) -> None:
        """A plain (not numbered) text for ``peer``; dropped when ``peer`` is not connected here."""
        sink = self.sinks.get(peer)
        if sink is not None:
            self._hand(sink, peer, text)

    def deliver_numbered(self, peer: str, seq: int, text: str) -> None:
        """A resumable peer's text numbered ``seq``: once, in order. Dropped when not connected here (its backend
        keeps it for the replay)."""
        sink = self.sinks.get(peer)
        if sink is None:
            return
        if type(sink) is Pending:
            sink.texts.append((seq, text))
            return
        last = self._last.get(peer, 0)
        if seq <= last:
            return  # already handed over (replayed, then live again)
        if seq != last + 1:
            self._log.warning("seq_gap", peer=peer, last=last, seq=seq)
        self._last[peer] = seq
        self._hand(sink, peer, text)

    def _hand(self, sink: PeerSink | Pending, peer: str, text: str) -> None:
        try:
            sink.deliver(text)
        except Exception:  # a broken sink is its own connection's problem; it must not fail the sender's
            self._log.error("deliver failed", peer=peer, exc_info=True)

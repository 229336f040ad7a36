"""Running one connection's session: its steps in order, one at a time, and its end after the step in flight.

A session answers most messages at once (a relay), but a join, a resume or a leave may wait on the shared room
state; ``Session.handle_text`` then hands back the step as a coroutine. The rules for running them are kept here,
once, for the server, the benchmarks and the tests alike:

- one step in flight: messages that arrive meanwhile wait in an inbox, in order, and are handled after it
  (reading from the connection pauses while the inbox is full);
- the end of the connection (``end``) runs after the step in flight: a join must finish before its session ends,
  or the member would stay in the room with no connection;
- with backends that never wait (``Backends.waits`` false), every step runs inline, as immediately as a relay.

No event loop here: ``spawn`` (the process's task runner) turns a step into a task when it may wait.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

import structlog

from .peers import Logger
from .session import Step

__all__ = ["INBOX_LIMIT", "Driven", "Reading", "SessionDriver", "run_inline"]

T = TypeVar("T")

#: Messages queued behind a step in flight before reading from the connection pauses.
INBOX_LIMIT = 64

log: Logger = structlog.get_logger("signaling.session")


def run_inline(step: Coroutine[Any, Any, T]) -> T:
    """Run ``step`` to its end now: for backends that never wait, a join is as immediate as a relay.

    Raises:
        RuntimeError: the step waited (a backend declared as never waiting did).
    """
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("a backend declared as never waiting waited")


class Reading(Protocol):
    """What the driver needs of the connection: holding its reads, and failing it when a step breaks."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...

    def step_failed(self) -> None:
        """A step raised (a bug, or a backend failure it did not expect): close the connection (1011)."""


class Driven(Protocol):
    """What the driver runs: a ``Session``, or another protocol's (signaling/interop/) with the same step rules."""

    @property
    def peer(self) -> str | None: ...
    def handle_text(self, text: str) -> Step | None: ...
    def left(self) -> Step: ...
    def dropped(self) -> Step: ...


S = TypeVar("S", bound=Driven)


class SessionDriver(Generic[S]):
    """Feeds one connection's texts to its session and runs the steps that come back, in order.

    Args:
        session: the connection's session (a Session, or any ``Driven``).
        connection: where reads are held and failures reported.
        spawn: runs a step as a task (the process keeps track of it); None when the backends never wait.
    """

    __slots__ = ("_busy", "_connection", "_ending", "_inbox", "_spawn", "session")

    def __init__(self, session: S, connection: Reading, spawn: Callable[[Step], object] | None) -> None:
        self.session = session
        self._connection = connection
        self._spawn = spawn
        self._busy = False
        self._inbox: collections.deque[str] = collections.deque()
        self._ending: Step | None = None

    def feed(self, text: str) -> None:
        """One text message from the client."""
        if self._busy:
            self._inbox.append(text)
            if len(self._inbox) == INBOX_LIMIT:
                self._connection.pause_reading()
            return
        step = self.session.handle_text(text)
        if step is not None:
            self._start(step)

    def begin(self, step: Step) -> None:
        """A step of the connection's own before its first text (another protocol's opening join)."""
        self._start(step)

    def end(self, *, left: bool) -> None:
        """The connection is gone: ``left`` when the client ended its session on purpose (a close it started
        with the end-session code), else it dropped. Runs after the step in flight, if any; queued texts go."""
        self._inbox.clear()
        ending = self.session.left() if left else self.session.dropped()
        if self._busy:
            self._ending = ending
        else:
            self._start(ending)

    def _start(self, step: Step) -> None:
        if self._spawn is None:
            run_inline(step)
            return
        self._busy = True
        self._spawn(self._work(step))

    async def _work(self, step: Step) -> None:
        """``step``, then the queued texts in order (more steps among them), then the end if it came meanwhile."""
        session = self.session
        try:
            await step
            inbox = self._inbox
            while inbox:
                next_step = session.handle_text(inbox.popleft())
                if next_step is not None:
                    await next_step
        except Exception:
            log.error("session_step_failed", peer=session.peer, exc_info=True)
            self._connection.step_failed()
        finally:
            self._busy = False
            self._connection.resume_reading()
        ending, self._ending = self._ending, None
        if ending is not None:
            await ending

"""Bounded polling: the one place in the tests that sleeps.

Project rule: tests wait on events, not sleeps. Whatever can be awaited is awaited: a future or a queue, the
next message on a socket, a process exit, a Playwright condition (``wait_for_function``, locators). Only a
condition that announces nothing may be polled, and then only through this module:

* state inside a server or a protocol object (its connection table, a ``reading_paused`` flag, the directory's
  counters, a client's unread queue) that the code under test exposes no notification for;
* what another process writes to its log file, or whether its port accepts connections yet;
* what a peer presents on a *new* connection (e.g. the certificate of a fresh TLS handshake after a reload).

Each helper is bounded by an explicit ``timeout`` and fails with an ``AssertionError`` whose message may be a
callable, evaluated only on failure, so that it can quote fresh context (a log tail, the last value seen).

Two helpers exist for the rare checks that are about time itself:

* `stays_true` proves that something does *not* happen for a while (a writer stays blocked, a counter does not
  move). There is no event for "nothing happened", so the only evidence is watching for a fixed time; the
  predicate is checked all along, not just at the end.
* `hold` lets time pass on purpose when the passage of time is the stimulus under test (a client that trickles
  its request head byte by byte, a client that talks more slowly than a timeout). It must not be used to wait
  for anything: that is what `wait_until` is for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Predicate = Callable[[], bool | Awaitable[bool]]
SyncPredicate = Callable[[], bool]
Message = str | Callable[[], str]

DEFAULT_INTERVAL = 0.01


def _render(message: Message) -> str:
    return message() if callable(message) else message


async def _holds(predicate: Predicate) -> bool:
    result = predicate()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def wait_until(
    predicate: Predicate,
    *,
    timeout: float,  # noqa: ASYNC109 (this is the bounded wait; the bound is part of every call)
    interval: float = DEFAULT_INTERVAL,
    message: Message = "condition not met",
) -> None:
    """Return as soon as ``predicate()`` is true; raise ``AssertionError(message)`` after ``timeout`` seconds.

    For conditions that have no event to await (see the module docstring). ``predicate`` may be a plain
    function or return an awaitable (e.g. a probe that opens a connection); an awaitable predicate that is
    still running at the deadline is cancelled and counts as a timeout. Exceptions from ``predicate`` propagate.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        async with asyncio.timeout_at(deadline) as cm:
            while True:
                if await _holds(predicate):
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        if not cm.expired():
            raise  # from the predicate itself, not our deadline
    raise AssertionError(f"{_render(message)} (waited {timeout:g} s)")


def wait_until_sync(
    predicate: SyncPredicate,
    *,
    timeout: float,
    interval: float = DEFAULT_INTERVAL,
    message: Message = "condition not met",
) -> None:
    """`wait_until` for synchronous code (no event loop to yield to): blocks the calling thread while polling."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{_render(message)} (waited {timeout:g} s)")
        time.sleep(interval)


async def stays_true(
    predicate: SyncPredicate,
    *,
    for_seconds: float,
    interval: float = DEFAULT_INTERVAL,
    message: Message = "condition stopped holding",
) -> None:
    """Check ``predicate()`` every ``interval`` for ``for_seconds``; raise ``AssertionError`` the moment it is false.

    For proving that something does not happen (no event fires for "nothing happened", so watching for a fixed
    time is the only evidence). Keep ``for_seconds`` short and explain in the test what the time span covers.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + for_seconds
    while True:
        if not predicate():
            elapsed = for_seconds - (end - loop.time())
            raise AssertionError(f"{_render(message)} (after {elapsed:.3f} of {for_seconds:g} s)")
        remaining = end - loop.time()
        if remaining <= 0:
            return
        await asyncio.sleep(min(interval, remaining))


async def hold(seconds: float, *, why: str) -> None:
    """Let ``seconds`` pass on purpose, because elapsed time is the stimulus under test (``why`` says how).

    E.g. pacing a client that trickles bytes to test a deadline, or that talks just often enough to stay under
    an idle timeout. Never for waiting on something: use `wait_until` or the event itself.
    """
    del why  # documentation at the call site
    await stays_true(lambda: True, for_seconds=seconds, interval=seconds)

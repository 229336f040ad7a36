"""The order of a session's steps (signaling/rooms/driver.py): one in flight, later texts queued behind it, the end
after it; inline when the backends never wait. A directory that waits for the test's word stands in for Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from signaling.rooms.backends import Backends, in_memory
from signaling.rooms.directory import InMemoryDirectory
from signaling.rooms.driver import INBOX_LIMIT, SessionDriver, run_inline
from signaling.rooms.peers import Member
from signaling.rooms.session import Session, Step
from tests.helpers.sinks import RecordingSink
from tests.rooms.clients import Client, Rooms, dumps

JOIN = '{"type":"join","room":"r"}'
PING = '{"type":"ping"}'


class Gated(InMemoryDirectory):
    """An in-memory directory whose joins wait until the test opens the gate (as a round trip to Redis would)."""

    waits = True

    def __init__(self, **limits: Any) -> None:
        super().__init__(**limits)
        self.gate = asyncio.Event()

    async def join(
        self, member: Member, lease: str | None = None, *, max_peers: int | None = None, listed: bool = True
    ) -> list[Member]:
        await self.gate.wait()
        return await super().join(member, lease, max_peers=max_peers, listed=listed)


class Spawned:
    """The process's task runner, as the app gives it: every step a task, kept to be awaited."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def __call__(self, step: Step) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(step))

    async def done(self) -> None:
        await asyncio.gather(*self.tasks)


def gated_backends() -> tuple[Backends, Gated]:
    plain = in_memory()
    directory = Gated()
    return Backends(directory, plain.router, plain.replay), directory


async def test_texts_wait_behind_a_step_in_flight_and_follow_it_in_order() -> None:
    backends, directory = gated_backends()
    sink, spawn = RecordingSink(), Spawned()
    driver = SessionDriver(Session(backends, sink), sink, spawn)
    driver.feed(JOIN)
    for n in range(3):
        driver.feed(dumps({"type": "ping", "id": n}))
    assert sink.texts == []  # the join is in flight: nothing may overtake it
    directory.gate.set()
    await spawn.done()
    assert [m["type"] for m in sink.messages] == ["welcome", "pong", "pong", "pong"]


async def test_a_full_inbox_holds_reading_until_the_step_is_done() -> None:
    backends, directory = gated_backends()
    sink, spawn = RecordingSink(), Spawned()
    driver = SessionDriver(Session(backends, sink), sink, spawn)
    driver.feed(JOIN)
    paused = []
    for _ in range(INBOX_LIMIT):
        driver.feed(PING)
        paused.append(sink.reading_paused)
    assert paused == [False] * (INBOX_LIMIT - 1) + [True]
    directory.gate.set()
    await spawn.done()
    assert not sink.reading_paused and len(sink.texts) == 1 + INBOX_LIMIT


async def test_the_end_runs_after_the_join_in_flight() -> None:
    """A session that ended while its join was in flight must not stay in the room with no connection."""
    backends, directory = gated_backends()
    spawn = Spawned()
    watcher = RecordingSink()
    directory.gate.set()
    SessionDriver(Session(backends, watcher), watcher, spawn).feed(JOIN)
    await spawn.done()
    watcher.take()
    directory.gate.clear()
    sink = RecordingSink()
    driver = SessionDriver(Session(backends, sink), sink, spawn)
    driver.feed(JOIN)
    driver.feed(PING)  # dropped with the connection
    driver.end(left=False)
    directory.gate.set()
    await spawn.done()
    assert [m["type"] for m in sink.messages] == ["welcome"]
    assert [m["type"] for m in watcher.messages] == ["peer-joined", "peer-left"]
    assert len(directory.members("r")) == 1


async def test_a_step_that_raises_fails_the_connection() -> None:
    class Broken(Gated):
        async def join(
            self, member: Member, lease: str | None = None, *, max_peers: int | None = None, listed: bool = True
        ) -> list[Member]:
            raise RuntimeError("a bug")

    plain = in_memory()
    backends = Backends(Broken(), plain.router, plain.replay)
    sink, spawn = RecordingSink(), Spawned()
    driver = SessionDriver(Session(backends, sink), sink, spawn)
    driver.feed(JOIN)
    await spawn.done()
    assert sink.failed_steps == 1 and not sink.reading_paused


def test_backends_that_never_wait_run_every_step_inline(rooms: Rooms) -> None:
    assert not rooms.backends.waits
    a, b = Client(rooms), Client(rooms)
    a.join()
    b.join()
    a.close()  # inline: b is told at once
    assert b.sink.take()[-1] == {"type": "peer-left", "peer": "peer0"}


class Suspends:
    """An awaitable that suspends its coroutine once, as any real wait does."""

    def __await__(self) -> Any:
        yield


def test_run_inline_refuses_a_step_that_waits() -> None:
    async def waits() -> None:
        await Suspends()

    with pytest.raises(RuntimeError, match="waited"):
        run_inline(waits())

"""PeerJSSession on the in-memory room layer, for what sockets cannot force: a connection taken over whose end
comes late (it must leave nothing), and the bounds of what waits for absent peers."""

from __future__ import annotations

import asyncio
import json

from signaling.interop.peerjs import session as peerjs_session
from signaling.interop.peerjs import wire
from signaling.interop.peerjs.session import PeerJSCounters, PeerJSSession
from signaling.rooms.backends import Backends, in_memory
from signaling.rooms.directory import InMemoryDirectory
from signaling.rooms.driver import run_inline
from signaling.rooms.peers import Member


class Sink:
    """A connection as the session sees it: what it was sent, and whether it was taken over or closed."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.taken = False
        self.closed = False

    def deliver(self, text: str) -> None:
        self.texts.append(text)

    def taken_over(self) -> None:
        self.taken = True  # the app would call session.moved() here: not yet, to let the end come first

    def removed(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(backends: Backends, peer_id: str, token: str = "t", **kw: object) -> tuple[PeerJSSession, Sink]:
    sink = Sink()
    options: dict[str, object] = {"max_peers": 100, "expire_timeout": 5.0, "waiting": lambda s: None}
    options.update(kw)
    session = PeerJSSession(backends, sink, key="k", peer_id=peer_id, token=token, **options)  # type: ignore[arg-type]
    run_inline(session.open())
    return session, sink


def test_a_connection_taken_over_leaves_nothing_when_its_end_comes_late() -> None:
    backends = in_memory()
    first, first_sink = opened(backends, "alice")
    second, _ = opened(backends, "alice")
    assert first_sink.taken
    run_inline(first.dropped())  # its end, before the app heard of the takeover: the lease is not its own
    assert "k.alice" in backends.directory.members("peerjs.k")
    third, _ = opened(backends, "alice")  # and back to the first lease
    run_inline(second.dropped())
    assert "k.alice" in backends.directory.members("peerjs.k")
    run_inline(third.dropped())
    assert backends.directory.members("peerjs.k") == {}


def test_what_waits_is_bounded_and_goes_in_order_once_the_peer_comes() -> None:
    backends, counters, clock = in_memory(), PeerJSCounters(), Clock()
    alice, alice_sink = opened(backends, "alice", counters=counters, clock=clock)
    for n in range(peerjs_session.MAX_WAITING + 2):
        assert alice.handle_text(json.dumps({"type": "CANDIDATE", "dst": "bob", "payload": n})) is None
    assert counters.dropped == 2
    assert alice.tick(clock.now) is True  # bob is not there: it still waits
    _, bob_sink = opened(backends, "bob", clock=clock)
    assert alice.tick(clock.now) is False
    got = [json.loads(t) for t in bob_sink.texts]
    assert got[0] == {"type": "OPEN"}
    assert [m["payload"] for m in got[1:]] == list(range(peerjs_session.MAX_WAITING))
    assert counters.late == peerjs_session.MAX_WAITING and alice_sink.texts == [wire.OPEN_JSON]


def test_one_expire_per_absent_peer_after_the_timeout() -> None:
    backends, clock = in_memory(), Clock()
    alice, sink = opened(backends, "alice", clock=clock)
    for dst in ("x", "x", "y"):
        alice.handle_text(json.dumps({"type": "OFFER", "dst": dst}))
    clock.now += 4.9
    assert alice.tick(clock.now) is True and sink.texts == [wire.OPEN_JSON]
    clock.now += 0.2
    assert alice.tick(clock.now) is False
    assert sink.texts[1:] == [wire.expire_json("x", "alice"), wire.expire_json("y", "alice")]


async def test_a_failed_attempt_on_a_held_id_never_holds_its_holders_texts() -> None:
    """While another token's attempt on the id waits for the directory (Redis, in a cluster), texts for the
    holder still reach it at once: nothing of the holder's is touched before the token is known to hold it."""
    gate, entered = asyncio.Event(), asyncio.Event()

    class Slow(InMemoryDirectory):
        async def claim(self, digest: str, new_digest: str, now: float) -> tuple[Member, str] | None:
            entered.set()
            await gate.wait()
            return await super().claim(digest, new_digest, now)

    plain = in_memory()
    backends = Backends(Slow(), plain.router, plain.replay)
    _, holder = opened(backends, "alice", "t1")
    bob, _ = opened(backends, "bob")
    thief_sink = Sink()
    thief = PeerJSSession(
        backends,
        thief_sink,
        key="k",
        peer_id="alice",
        token="t2",
        max_peers=100,
        expire_timeout=5.0,
        waiting=lambda s: None,
    )
    attempt = asyncio.ensure_future(thief.open())
    await entered.wait()  # the attempt now waits in the directory
    bob.handle_text(json.dumps({"type": "OFFER", "dst": "alice", "payload": 1}))
    assert json.loads(holder.texts[-1])["payload"] == 1
    gate.set()
    await attempt
    assert thief_sink.texts == [wire.ID_TAKEN_JSON] and thief_sink.closed and not holder.taken

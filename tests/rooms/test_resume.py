"""Session resume (docs/protocol.md, "Session resume"), with the in-memory backends and a clock the test moves."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.rooms.driver import run_inline
from tests.rooms.clients import Client, RoomCounts, Rooms

GRACE = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def client(rooms: Rooms, clock: Clock, **kwargs: Any) -> Client:
    kwargs.setdefault("resume_grace", GRACE)
    return Client(rooms, clock=clock, **kwargs)


def expire(rooms: Rooms, clock: Clock) -> int:
    return run_inline(rooms.backends.end_expired(clock()))


def relay(sender: Client, to: Client, n: int) -> None:
    for i in range(n):
        assert sender.send({"type": "message", "to": to.peer, "data": i}) == []


def test_a_resumable_session_numbers_every_room_message(rooms: Rooms, clock: Clock) -> None:
    alice = client(rooms, clock)
    welcome = alice.join(resumable=True)
    assert len(welcome["resume"]) >= 22 and "seq" not in welcome  # 128+ random bits, URL-safe
    bob = client(rooms, clock)
    bob.join()
    relay(bob, alice, 2)
    assert alice.send({"type": "ping"}) == [
        {"type": "peer-joined", "peer": bob.peer, "name": None, "meta": None, "seq": 1},
        {"type": "message", "from": bob.peer, "data": 0, "seq": 2},
        {"type": "message", "from": bob.peer, "data": 1, "seq": 3},
        {"type": "pong"},  # pong and error carry no seq
    ]
    assert "seq" not in str(bob.sink.texts)  # bob did not ask for resume


def test_a_drop_keeps_the_peer_and_the_resume_replays_what_it_missed(rooms: Rooms, clock: Clock) -> None:
    alice, bob = client(rooms, clock), client(rooms, clock)
    token = alice.join(resumable=True)["resume"]
    bob.join()
    relay(bob, alice, 3)  # seq 1 peer-joined, 2..4 messages: "written to the socket", never processed
    peer = alice.peer
    alice.close()
    assert bob.sink.take() == []  # no peer-left
    relay(bob, alice, 2)  # seq 5, 6: kept while alice is away
    back = client(rooms, clock)
    welcome = back.send({"type": "join", "room": "r", "resume": token, "last_seq": 2, "id": 9})
    assert welcome[0] == {
        "type": "welcome",
        "peer": peer,
        "room": "r",
        "peers": [{"peer": bob.peer, "name": None, "meta": None}],
        "iceServers": [],
        "resume": welcome[0]["resume"],
        "resumed": True,
        "ref": 9,
    }
    assert welcome[0]["resume"] != token
    assert [(m["data"], m["seq"]) for m in welcome[1:]] == [(1, 3), (2, 4), (0, 5), (1, 6)]
    relay(bob, back, 1)
    assert back.sink.take() == [{"type": "message", "from": bob.peer, "data": 0, "seq": 7}]
    assert bob.sink.take() == []  # bob never saw alice go


def test_a_used_token_is_dead(rooms: Rooms, clock: Clock) -> None:
    alice, bob = client(rooms, clock), client(rooms, clock)
    token = alice.join(resumable=True)["resume"]
    bob.join()
    alice.close()
    again = client(rooms, clock)
    assert again.join(resume=token, last_seq=0)["resumed"] is True
    third = client(rooms, clock)
    fresh = third.join(resume=token, last_seq=0)
    assert fresh["resumed"] is False and fresh["peer"] != again.peer


def test_grace_expiry_ends_the_session(rooms: Rooms, clock: Clock) -> None:
    alice, bob = client(rooms, clock), client(rooms, clock)
    token = alice.join(resumable=True)["resume"]
    peer = alice.peer
    bob.join()
    alice.close()  # a server-initiated close starts the grace too
    clock.now += GRACE - 1
    assert expire(rooms, clock) == 0
    clock.now += 2
    assert expire(rooms, clock) == 1
    assert bob.sink.take() == [{"type": "peer-left", "peer": peer}]
    assert rooms.stats() == RoomCounts(rooms=1, peers=1)
    late = client(rooms, clock)
    assert late.join(resume=token, last_seq=0)["resumed"] is False


@pytest.mark.parametrize("how", ["leave", "close-1000"])
def test_leave_or_a_normal_close_ends_the_session_at_once(rooms: Rooms, clock: Clock, how: str) -> None:
    alice, bob = client(rooms, clock), client(rooms, clock)
    token = alice.join(resumable=True)["resume"]
    peer = alice.peer
    bob.join()
    if how == "leave":
        alice.send({"type": "leave"})
    else:
        alice.close(left=True)
    assert bob.sink.take() == [{"type": "peer-left", "peer": peer}]
    assert client(rooms, clock).join(resume=token)["resumed"] is False


def test_a_takeover_closes_the_old_connection_and_the_session_goes_on(rooms: Rooms, clock: Clock) -> None:
    alice, bob = client(rooms, clock), client(rooms, clock)
    token = alice.join(resumable=True)["resume"]
    bob.join()
    new = client(rooms, clock)
    assert new.join(resume=token, last_seq=1)["resumed"] is True  # the old connection never noticed the drop
    assert alice.sink.was_taken_over
    alice.close()  # its close, when it comes, does not end the session
    relay(bob, new, 1)
    assert new.sink.take()[0]["seq"] == 2
    assert bob.sink.take() == [] and rooms.stats() == RoomCounts(rooms=1, peers=2)


@pytest.mark.parametrize(
    ("last_seq", "why"),
    [(0, "a gap: the first kept is seq 3"), (99, "beyond the last sent")],
)
def test_what_cannot_be_replayed_is_a_fresh_join_and_the_old_session_leaves(
    clock: Clock, last_seq: int, why: str
) -> None:
    rooms = Rooms(kept_count=4)
    alice, bob = client(rooms, clock), client(rooms, clock)
    token = alice.join(resumable=True)["resume"]
    old = alice.peer
    bob.join()
    relay(bob, alice, 5)  # seq 1..6, of which 3..6 are kept
    alice.close()
    bob.sink.take()
    again = client(rooms, clock)
    welcome = again.join(resume=token, last_seq=last_seq)
    assert welcome["resumed"] is False and welcome["peer"] != old, why
    assert bob.sink.take() == [
        {"type": "peer-left", "peer": old},
        {"type": "peer-joined", "peer": again.peer, "name": None, "meta": None},
    ]


def test_resuming_into_another_room_is_a_fresh_join_there(rooms: Rooms, clock: Clock) -> None:
    alice, bob = client(rooms, clock), client(rooms, clock)
    token = alice.join(resumable=True)["resume"]
    old = alice.peer
    bob.join()
    alice.close()
    moved = client(rooms, clock)
    welcome = moved.join("elsewhere", resume=token, last_seq=1)
    assert welcome["resumed"] is False and welcome["room"] == "elsewhere"
    assert bob.sink.take()[-1] == {"type": "peer-left", "peer": old}


def test_with_resume_off_there_is_no_token_and_no_seq(rooms: Rooms, clock: Clock) -> None:
    alice, bob = client(rooms, clock, resume_grace=0), client(rooms, clock, resume_grace=0)
    welcome = alice.join(resumable=True)
    assert "resume" not in welcome
    bob.join()
    assert alice.sink.take() == [{"type": "peer-joined", "peer": bob.peer, "name": None, "meta": None}]
    alice.close()
    assert bob.sink.take() == [{"type": "peer-left", "peer": alice.session.peer or welcome["peer"]}]


def test_bad_resume_tokens_from_a_shared_address_never_block_a_valid_one(rooms: Rooms, clock: Clock) -> None:
    """An office NAT: a guesser and a victim behind one address. The guesser's bad tokens cost lookups only;
    the victim's real token still resumes (tokens are 192-bit: there is nothing to throttle)."""
    alice, bob = client(rooms, clock, address="192.0.2.9"), client(rooms, clock)
    token = alice.join(resumable=True)["resume"]
    bob.join()
    alice.close()
    for n in range(50):
        guesser = client(rooms, clock, address="192.0.2.9")
        assert guesser.join(f"g{n}", resume=f"guess{n}", last_seq=0)["resumed"] is False
        guesser.close(left=True)
    assert client(rooms, clock, address="192.0.2.9").join(resume=token, last_seq=1)["resumed"] is True

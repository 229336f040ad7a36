"""InMemoryHub: membership, limits, relay targets, presence on leave, and failure isolation between sinks."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from signaling.protocol.errors import ErrorCode, SignalingError
from signaling.protocol.models import PeerEntry
from signaling.rooms.hub import Hub, HubStats, InMemoryHub, Joined, new_peer_id
from tests.helpers.sinks import RecordingSink


class FailingSink:
    def deliver(self, text: str) -> None:
        raise ConnectionError("gone")


class CallbackSink(RecordingSink):
    """Runs a callback on delivery, like a transport that closes a slow consumer from inside deliver()."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self.callback = callback

    def deliver(self, text: str) -> None:
        super().deliver(text)
        self.callback()


def join(hub: Hub, room: str = "r", name: str | None = None, meta: dict[str, Any] | None = None):
    sink = RecordingSink()
    return hub.join(sink, room, name, meta), sink


def test_is_a_hub() -> None:
    assert isinstance(InMemoryHub(), Hub)


def test_join_returns_id_and_peers_already_there() -> None:
    hub = InMemoryHub()
    a, _ = join(hub, name="alice", meta={"k": 1})
    b, _ = join(hub)
    c, _ = join(hub, name="carol")
    assert a == Joined(a.peer, "r", ())
    assert b.peers == (PeerEntry(a.peer, "alice", {"k": 1}),)
    assert c.peers == (PeerEntry(a.peer, "alice", {"k": 1}), PeerEntry(b.peer, None, None))
    assert hub.peers_in("r") == (*c.peers, PeerEntry(c.peer, "carol", None))
    assert hub.stats() == HubStats(rooms=1, peers=3)


def test_join_notifies_nobody() -> None:
    """peer-joined is the session's to send, after welcome."""
    hub = InMemoryHub()
    _, sink_a = join(hub)
    join(hub)
    assert sink_a.texts == []


def test_peer_ids_are_unguessable_url_safe_and_unique() -> None:
    hub = InMemoryHub(max_peers_per_room=1000)
    ids = {join(hub, room=f"r{i % 7}")[0].peer for i in range(2000)}
    assert len(ids) == 2000
    for peer in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{16}", peer)  # 16 chars of base64 = 96 bits >= 64
    assert new_peer_id() != new_peer_id()


def test_peer_id_collision_is_retried() -> None:
    ids = itertools.chain(["same", "same", "same", "other"])
    hub = InMemoryHub(peer_ids=lambda: next(ids))
    assert join(hub)[0].peer == "same"
    assert join(hub)[0].peer == "other"


def test_peer_id_generator_that_never_changes_is_a_bug() -> None:
    hub = InMemoryHub(peer_ids=lambda: "same")
    join(hub)
    with pytest.raises(RuntimeError):
        join(hub)


def test_room_full() -> None:
    hub = InMemoryHub(max_peers_per_room=2)
    join(hub)
    join(hub)
    with pytest.raises(SignalingError) as info:
        join(hub)
    assert info.value.code is ErrorCode.ROOM_FULL
    assert "'r' is full (2 peers)" in info.value.message
    join(hub, room="other")  # other rooms are unaffected
    assert hub.stats() == HubStats(rooms=2, peers=3)


def test_room_full_frees_up_on_leave() -> None:
    hub = InMemoryHub(max_peers_per_room=1)
    a, _ = join(hub)
    hub.leave(a.peer)
    join(hub)


def test_room_limit() -> None:
    hub = InMemoryHub(max_rooms=2)
    _a, _ = join(hub, room="one")
    join(hub, room="two")
    join(hub, room="one")  # joining an existing room is fine at the limit
    with pytest.raises(SignalingError) as info:
        join(hub, room="three")
    assert info.value.code is ErrorCode.ROOM_FULL
    assert "limit of 2 rooms" in info.value.message
    assert hub.stats() == HubStats(rooms=2, peers=3)


@pytest.mark.parametrize(("rooms", "peers"), [(0, 1), (1, 0)], ids=["rooms", "peers"])
def test_limits_must_be_positive(rooms: int, peers: int) -> None:
    with pytest.raises(ValueError):
        InMemoryHub(max_rooms=rooms, max_peers_per_room=peers)


def test_leave_notifies_others_and_rooms_vanish() -> None:
    hub = InMemoryHub()
    a, sink_a = join(hub)
    b, sink_b = join(hub)
    c, sink_c = join(hub, room="elsewhere")
    hub.leave(a.peer)
    assert sink_b.messages == [{"type": "peer-left", "peer": a.peer}]
    assert sink_a.texts == [] and sink_c.texts == []
    assert hub.stats() == HubStats(rooms=2, peers=2)
    hub.leave(b.peer)
    assert hub.stats() == HubStats(rooms=1, peers=1)
    assert hub.peers_in("r") == ()
    with pytest.raises(SignalingError) as info:
        hub.broadcast(b.peer, "{}")
    assert info.value.code is ErrorCode.NOT_JOINED
    hub.leave(c.peer)
    assert hub.stats() == HubStats(rooms=0, peers=0)


def test_leave_without_notice() -> None:
    """For a peer that never got announced with peer-joined."""
    hub = InMemoryHub()
    a, _ = join(hub)
    _, sink_b = join(hub)
    hub.leave(a.peer, notify=False)
    assert sink_b.texts == []
    assert hub.stats() == HubStats(rooms=1, peers=1)


def test_leave_is_idempotent() -> None:
    hub = InMemoryHub()
    a, _ = join(hub)
    _b, sink_b = join(hub)
    hub.leave(a.peer)
    hub.leave(a.peer)
    hub.leave("never-joined")
    assert sink_b.texts == [json.dumps({"type": "peer-left", "peer": a.peer}, separators=(",", ":"))]


def test_send_reaches_only_the_target() -> None:
    hub = InMemoryHub()
    a, sink_a = join(hub)
    b, sink_b = join(hub)
    _, sink_c = join(hub)
    hub.send(a.peer, b.peer, "one")
    hub.send(a.peer, b.peer, "two")
    assert sink_b.texts == ["one", "two"]  # order kept
    assert sink_a.texts == [] and sink_c.texts == []


def test_send_to_self_is_allowed() -> None:
    hub = InMemoryHub()
    a, sink_a = join(hub)
    hub.send(a.peer, a.peer, "echo")
    assert sink_a.texts == ["echo"]


@pytest.mark.parametrize("target", ["other-room", "unknown", "left"], ids=["other-room", "unknown", "left"])
def test_send_unknown_peer(target: str) -> None:
    hub = InMemoryHub()
    a, _ = join(hub)
    gone, _ = join(hub)
    elsewhere, sink_elsewhere = join(hub, room="other")
    hub.leave(gone.peer)
    to = {"other-room": elsewhere.peer, "unknown": "nobody", "left": gone.peer}[target]
    with pytest.raises(SignalingError) as info:
        hub.send(a.peer, to, "x")
    assert info.value.code is ErrorCode.UNKNOWN_PEER
    assert repr(to) in info.value.message
    assert sink_elsewhere.texts == []


def test_send_and_broadcast_need_a_joined_sender() -> None:
    hub = InMemoryHub()
    b, _ = join(hub)
    for call in (lambda: hub.send("ghost", b.peer, "x"), lambda: hub.broadcast("ghost", "x")):
        with pytest.raises(SignalingError) as info:
            call()
        assert info.value.code is ErrorCode.NOT_JOINED


def test_broadcast_reaches_everyone_else_in_the_room_with_the_same_text() -> None:
    hub = InMemoryHub()
    a, sink_a = join(hub)
    _, sink_b = join(hub)
    _, sink_c = join(hub)
    _, sink_d = join(hub, room="other")
    hub.broadcast(a.peer, "hello")
    assert sink_a.texts == [] and sink_d.texts == []
    assert sink_b.texts == ["hello"] and sink_c.texts == ["hello"]
    assert sink_b.texts[0] is sink_c.texts[0]  # serialized once, shared


def test_broadcast_alone_is_a_no_op() -> None:
    hub = InMemoryHub()
    a, sink_a = join(hub)
    hub.broadcast(a.peer, "hello")
    assert sink_a.texts == []


def test_a_failing_sink_does_not_fail_the_sender_or_the_others() -> None:
    hub = InMemoryHub()
    a, _ = join(hub)
    broken = hub.join(FailingSink(), "r")
    _, sink_c = join(hub)
    with capture_logs() as logs:
        hub.broadcast(a.peer, "x")
        hub.send(a.peer, broken.peer, "y")
        hub.leave(a.peer)
    assert sink_c.texts == ["x", json.dumps({"type": "peer-left", "peer": a.peer}, separators=(",", ":"))]
    failures = [e for e in logs if e["event"] == "deliver failed"]
    assert len(failures) == 3
    assert all(e["peer"] == broken.peer and e["log_level"] == "error" for e in failures)


def test_a_sink_may_leave_the_hub_from_inside_deliver() -> None:
    """A transport may close a slow consumer from inside deliver(); the broadcast in progress must survive."""
    hub = InMemoryHub()
    a, _ = join(hub)
    holder: dict[str, str] = {}
    closing = CallbackSink(lambda: hub.leave(holder["peer"]))
    holder["peer"] = hub.join(closing, "r").peer
    _, sink_c = join(hub)
    hub.broadcast(a.peer, "x")
    assert closing.texts == ["x"]
    # The peer-left of the closing peer overtakes the broadcast, which then goes on to the rest.
    assert json.loads(sink_c.texts[0]) == {"type": "peer-left", "peer": holder["peer"]}
    assert sink_c.texts[1] == "x"
    assert hub.stats() == HubStats(rooms=1, peers=2)

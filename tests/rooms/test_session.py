"""Session: the join rules, relay, presence and errors as a client sees them, through a recording sink."""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from signaling.protocol.errors import ErrorCode
from signaling.protocol.models import CLIENT_MESSAGE_TYPES, IceServer
from signaling.protocol.parse import parse_server_message
from signaling.rooms.ice import IceServerList
from signaling.rooms.session import BIG_MESSAGE, Session
from tests.helpers.sinks import RecordingSink
from tests.rooms.clients import Client, RoomCounts, Rooms, dumps, run

CAND = {
    "candidate": "candidate:842163049 1 udp 1677729535 203.0.113.45 51234 typ srflx raddr 10.0.0.2 rport 51234",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "Ab3d",
}
SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.fixture
def room(rooms: Rooms) -> tuple[Client, Client, Client, Client]:
    """a, b and c in room "r"; d in room "other"; all sinks emptied."""
    a, b, c, d = (Client(rooms) for _ in range(4))
    for client in (a, b, c):
        client.join("r")
    d.join("other")
    for client in (a, b, c, d):
        client.sink.take()
    return a, b, c, d


# ---------------------------------------------------------------------------------------------------------------
# join / welcome / presence


@pytest.mark.parametrize(
    ("id_field", "ref"), [({}, None), ({"id": "j1"}, "j1"), ({"id": 0}, 0)], ids=["no-id", "str", "int-0"]
)
def test_join_answers_welcome_with_ref_iff_id(rooms: Rooms, id_field: dict[str, Any], ref: Any) -> None:
    ice = [
        IceServer(urls="stun:stun.example.org"),
        IceServer(urls=["turn:t1", "turn:t2"], username="u", credential="c"),
    ]
    client = Client(rooms, ice_servers=IceServerList(ice))
    welcome = client.join("room-1", **id_field)
    expected = {
        "type": "welcome",
        "peer": client.peer,
        "room": "room-1",
        "peers": [],
        "iceServers": [
            {"urls": "stun:stun.example.org"},
            {"urls": ["turn:t1", "turn:t2"], "username": "u", "credential": "c"},
        ],
    }
    if ref is not None:
        expected["ref"] = ref
    assert welcome == expected
    assert client.session.joined and client.session.room == "room-1"


def test_welcome_lists_peers_already_there_and_others_get_peer_joined(rooms: Rooms) -> None:
    a, b, c = Client(rooms), Client(rooms), Client(rooms)
    a.join(name="alice", meta={"cam": True})
    b.join()
    a.sink.take()
    welcome = c.join(name="carol")
    assert welcome["peers"] == [
        {"peer": a.peer, "name": "alice", "meta": {"cam": True}},
        {"peer": b.peer, "name": None, "meta": None},
    ]
    joined = {"type": "peer-joined", "peer": c.peer, "name": "carol", "meta": None}
    assert a.sink.take() == [joined]
    assert b.sink.take() == [joined]
    assert c.sink.take() == []  # not told about itself


def test_welcome_comes_before_anything_else_for_the_newcomer(rooms: Rooms) -> None:
    """A peer reacting to peer-joined at once must find the newcomer already welcomed."""
    sessions: list[Session] = []

    class Reacting(RecordingSink):
        def deliver(self, text: str) -> None:
            super().deliver(text)
            message = json.loads(text)
            if message["type"] == "peer-joined":
                run(sessions[0].handle_text(dumps({"type": "offer", "to": message["peer"], "sdp": SDP})))

    sessions.append(Session(rooms.backends, Reacting()))
    run(sessions[0].handle_text('{"type":"join","room":"r"}'))
    a = Client(rooms)
    run(a.session.handle_text('{"type":"join","room":"r"}'))
    assert [m["type"] for m in a.sink.messages] == ["welcome", "offer"]


def test_peer_left_on_leave_and_on_close(rooms: Rooms) -> None:
    a, b, c = Client(rooms), Client(rooms), Client(rooms)
    for client in (a, b, c):
        client.join()
    for client in (a, b, c):
        client.sink.take()
    a_peer = a.peer
    assert a.send({"type": "leave"}) == []  # no answer to leave
    assert not a.session.joined and a.session.peer is None and a.session.room is None
    assert b.sink.take() == [{"type": "peer-left", "peer": a_peer}]
    assert c.sink.take() == [{"type": "peer-left", "peer": a_peer}]
    b_peer = b.peer
    b.close()
    assert c.sink.take() == [{"type": "peer-left", "peer": b_peer}]
    assert rooms.stats() == RoomCounts(rooms=1, peers=1)
    c.close()
    assert rooms.stats() == RoomCounts(rooms=0, peers=0)  # the room vanished


def test_join_again_after_leave_gets_a_new_id(rooms: Rooms) -> None:
    a, b = Client(rooms), Client(rooms)
    first = a.join()["peer"]
    b.join()
    a.send({"type": "leave"})
    welcome = a.join("r")
    assert welcome["peer"] != first
    assert welcome["peers"] == [{"peer": b.peer, "name": None, "meta": None}]


def test_join_another_room_after_leave(rooms: Rooms) -> None:
    a = Client(rooms)
    a.join("one")
    a.send({"type": "leave"})
    a.join("two")
    assert a.session.room == "two"
    assert rooms.stats() == RoomCounts(rooms=1, peers=1)


# ---------------------------------------------------------------------------------------------------------------
# relay: from set by the server, to removed, only the target (or the rest of the room) gets it

RELAYS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("offer", {"type": "offer", "sdp": SDP}, {"type": "offer", "sdp": SDP}),
    ("answer", {"type": "answer", "sdp": SDP}, {"type": "answer", "sdp": SDP}),
    ("candidate", {"type": "candidate", "candidate": CAND}, {"type": "candidate", "candidate": CAND}),
    ("candidate-end", {"type": "candidate", "candidate": None}, {"type": "candidate", "candidate": None}),
    (
        "message-to",
        {"type": "message", "data": {"chat": "hé", "n": [1, 2.5]}},
        {"type": "message", "data": {"chat": "hé", "n": [1, 2.5]}},
    ),
    ("message-data-null", {"type": "message", "data": None}, {"type": "message", "data": None}),
    (
        "client-from-overwritten",
        {"type": "offer", "sdp": "s", "from": "forged"},
        {"type": "offer", "sdp": "s"},
    ),
    (
        "id-and-unknown-fields-not-relayed",
        {"type": "answer", "sdp": "s", "id": 77, "extra": [1], "to_all": True},
        {"type": "answer", "sdp": "s"},
    ),
    (
        "candidate-extra-fields-dropped",
        {"type": "candidate", "candidate": {**CAND, "foundation": "x"}},
        {"type": "candidate", "candidate": CAND},
    ),
]


@pytest.mark.parametrize(("sent", "relayed"), [r[1:] for r in RELAYS], ids=[r[0] for r in RELAYS])
def test_relay_to_one_peer(room: tuple[Client, ...], sent: dict[str, Any], relayed: dict[str, Any]) -> None:
    a, b, c, d = room
    assert a.send({**sent, "to": b.peer}) == []  # no answer to the sender
    got = b.sink.take()
    assert got == [{"type": relayed["type"], "from": a.peer, **{k: v for k, v in relayed.items() if k != "type"}}]
    assert list(got[0])[:2] == ["type", "from"]
    assert "to" not in got[0]
    assert c.sink.take() == [] and d.sink.take() == []


def test_relay_keeps_order_between_two_peers(room: tuple[Client, ...]) -> None:
    a, b, _, _ = room
    for i in range(20):
        a.send({"type": "message", "to": b.peer, "data": i})
    assert [m["data"] for m in b.sink.take()] == list(range(20))


def test_message_without_to_goes_to_everyone_else_in_the_room(room: tuple[Client, ...]) -> None:
    a, b, c, d = room
    assert a.send({"type": "message", "data": {"hi": 1}, "from": "forged"}) == []
    expected = [{"type": "message", "from": a.peer, "data": {"hi": 1}}]
    assert b.sink.messages == expected and c.sink.messages == expected
    assert b.sink.texts[0] is c.sink.texts[0]  # serialized once for the whole room
    assert d.sink.take() == []


def test_to_self_comes_back(room: tuple[Client, ...]) -> None:
    a, b, _, _ = room
    assert a.send({"type": "message", "to": a.peer, "data": 1}) == [{"type": "message", "from": a.peer, "data": 1}]
    assert b.sink.take() == []


def test_a_peer_reaches_only_its_own_room(room: tuple[Client, ...]) -> None:
    a, _, _, d = room
    replies = a.send({"type": "offer", "to": d.peer, "sdp": SDP, "id": "o1"})
    assert replies == [
        {
            "type": "error",
            "code": "unknown-peer",
            "message": f"no peer {d.peer!r} in your room; it may have left (watch peer-left)",
            "ref": "o1",
        }
    ]
    assert d.sink.take() == []


# ---------------------------------------------------------------------------------------------------------------
# ping


@pytest.mark.parametrize("joined", [False, True], ids=["before-join", "joined"])
def test_ping_pong(rooms: Rooms, joined: bool) -> None:
    client = Client(rooms)
    if joined:
        client.join()
    assert client.send({"type": "ping"}) == [{"type": "pong"}]
    assert client.send({"type": "ping", "id": 5}) == [{"type": "pong"}]  # only welcome and error carry ref


# ---------------------------------------------------------------------------------------------------------------
# errors: code, ref iff id, and the connection goes on working

ERRORS: list[tuple[str, bool, Any, ErrorCode, str]] = [
    ("bad-json", False, '{"type":', ErrorCode.BAD_JSON, "not valid JSON"),
    ("invalid-message-not-object", False, "[]", ErrorCode.INVALID_MESSAGE, "JSON object"),
    (
        "invalid-message-field",
        False,
        {"type": "join", "room": "bad room!"},
        ErrorCode.INVALID_MESSAGE,
        "room: String should match pattern",
    ),
    (
        "invalid-message-nested",
        True,
        {"type": "candidate", "to": "x", "candidate": {"candidate": "c"}},
        ErrorCode.INVALID_MESSAGE,
        "candidate.sdpMid: Field required",
    ),
    ("unknown-type", False, {"type": "subscribe"}, ErrorCode.UNKNOWN_TYPE, "unknown message type 'subscribe'"),
    ("not-joined-leave", False, {"type": "leave"}, ErrorCode.NOT_JOINED, "join a room"),
    ("not-joined-offer", False, {"type": "offer", "to": "peer0", "sdp": SDP}, ErrorCode.NOT_JOINED, "join a room"),
    ("not-joined-answer", False, {"type": "answer", "to": "peer0", "sdp": SDP}, ErrorCode.NOT_JOINED, "join a room"),
    (
        "not-joined-candidate",
        False,
        {"type": "candidate", "to": "peer0", "candidate": CAND},
        ErrorCode.NOT_JOINED,
        "join a room",
    ),
    ("not-joined-message", False, {"type": "message", "data": 1}, ErrorCode.NOT_JOINED, "join a room"),
    (
        "not-joined-message-to",
        False,
        {"type": "message", "to": "peer0", "data": 1},
        ErrorCode.NOT_JOINED,
        "join a room",
    ),
    ("already-joined", True, {"type": "join", "room": "r"}, ErrorCode.ALREADY_JOINED, "already in room 'r'"),
    ("already-joined-other-room", True, {"type": "join", "room": "s"}, ErrorCode.ALREADY_JOINED, "send leave"),
    (
        "unknown-peer-offer",
        True,
        {"type": "offer", "to": "nobody", "sdp": SDP},
        ErrorCode.UNKNOWN_PEER,
        "no peer 'nobody'",
    ),
    (
        "unknown-peer-candidate",
        True,
        {"type": "candidate", "to": "nobody", "candidate": None},
        ErrorCode.UNKNOWN_PEER,
        "no peer",
    ),
    ("unknown-peer-message", True, {"type": "message", "to": "nobody", "data": 1}, ErrorCode.UNKNOWN_PEER, "no peer"),
    ("nan-in-data", True, '{"type":"message","data":[NaN]}', ErrorCode.BAD_JSON, "not valid JSON"),
    (
        "overflow-in-data",
        True,
        '{"type":"message","data":{"x":-1e999}}',
        ErrorCode.INVALID_MESSAGE,
        "data: numbers must fit",
    ),
]


def with_id(message: Any, id_value: Any) -> str:
    """The message text with an id added (texts that are not objects are left alone)."""
    if isinstance(message, dict):
        return dumps({**message, "id": id_value})
    text: str = message
    if text.startswith("{") and text.endswith("}"):
        return '{"id":' + dumps(id_value) + "," + text[1:]
    return text


@pytest.mark.parametrize("id_value", [None, "e-1", 12], ids=["no-id", "str-id", "int-id"])
@pytest.mark.parametrize(("joined", "message", "code", "fragment"), [r[1:] for r in ERRORS], ids=[r[0] for r in ERRORS])
def test_errors(rooms: Rooms, joined: bool, message: Any, code: ErrorCode, fragment: str, id_value: Any) -> None:
    client, other = Client(rooms), Client(rooms)
    other.join()
    if joined:
        client.join()
    other.sink.take()
    text = message if id_value is None else with_id(message, id_value)
    if not isinstance(text, str):
        text = dumps(text)
    replies = client.send(text)
    assert len(replies) == 1
    error = replies[0]
    assert error["type"] == "error" and error["code"] == code.value
    assert fragment in error["message"]
    id_echoed = id_value is not None and code is not ErrorCode.BAD_JSON and text.startswith("{")
    if id_echoed:
        assert error["ref"] == id_value
    else:
        assert "ref" not in error
    assert list(error)[:3] == ["type", "code", "message"]
    assert other.sink.take() == []  # nothing leaked to the room
    assert client.send({"type": "ping"}) == [{"type": "pong"}]  # still usable
    assert client.session.joined is joined


def test_room_full() -> None:
    small = Rooms(max_peers_per_room=1)
    Client(small).join()
    late = Client(small)
    replies = late.send({"type": "join", "room": "r", "id": "j"})
    assert [(m["code"], m.get("ref")) for m in replies] == [("room-full", "j")]
    assert not late.session.joined
    assert late.join("elsewhere")["room"] == "elsewhere"  # a refused join leaves the client free to try again


def test_room_limit_is_room_full() -> None:
    small = Rooms(max_rooms=1)
    Client(small).join("one")
    replies = Client(small).send({"type": "join", "room": "two"})
    assert replies[0]["code"] == "room-full"
    assert "limit of 1 rooms" in replies[0]["message"]


# ---------------------------------------------------------------------------------------------------------------
# close


def test_close_is_idempotent_and_later_texts_are_ignored(room: tuple[Client, ...]) -> None:
    a, b, _, _ = room
    a_peer = a.peer
    a.close()
    a.close()
    assert a.session.closed and not a.session.joined
    assert b.sink.take() == [{"type": "peer-left", "peer": a_peer}]
    assert a.send({"type": "ping"}) == []
    assert a.send({"type": "join", "room": "r"}) == []


def test_close_before_join(rooms: Rooms) -> None:
    client = Client(rooms)
    client.close()
    assert rooms.stats() == RoomCounts(rooms=0, peers=0)


def test_sink_that_closes_while_taking_the_welcome(rooms: Rooms) -> None:
    other = Client(rooms)
    other.join()
    other.sink.take()

    class Closing(RecordingSink):
        session: Session

        def deliver(self, text: str) -> None:
            super().deliver(text)
            run(self.session.dropped())

    sink = Closing()
    sink.session = Session(rooms.backends, sink)
    run(sink.session.handle_text('{"type":"join","room":"r"}'))
    assert [m["type"] for m in sink.messages] == ["welcome"]
    assert other.sink.take() == []  # never announced (no peer-joined), so no peer-left either
    assert rooms.stats() == RoomCounts(rooms=1, peers=1)


# ---------------------------------------------------------------------------------------------------------------
# logging


def test_logs_joins_leaves_and_errors_at_info_without_payloads(rooms: Rooms) -> None:
    with capture_logs() as logs:
        a, b = Client(rooms), Client(rooms)
        a.join("r", name="alice")
        b.join("r")
        a.send({"type": "offer", "to": b.peer, "sdp": SDP})
        a.send({"type": "candidate", "to": b.peer, "candidate": CAND})
        a.send({"type": "candidate", "to": "nobody", "candidate": CAND})
        a.send({"type": "leave"})
        b.close()
    events = [(e["event"], e["log_level"], e.get("peer"), e.get("room")) for e in logs]
    assert events == [
        ("joined", "info", "peer0", "r"),
        ("joined", "info", "peer1", "r"),
        ("client error", "info", "peer0", "r"),
        ("left", "info", "peer0", "r"),
        ("left", "info", "peer1", "r"),
    ]
    assert logs[2]["code"] == "unknown-peer"
    assert [e["reason"] for e in logs[3:]] == ["leave", "closed"]
    flat = json.dumps(logs, default=str)
    assert "v=0" not in flat and "typ srflx" not in flat


# ---------------------------------------------------------------------------------------------------------------
# property: any text in, only valid server messages out, never an exception

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
PEER_REFS = st.sampled_from(["peer0", "peer1", "peer2", "nobody", ""]) | st.text(max_size=5)
CANDIDATES = st.none() | st.fixed_dictionaries(
    {"candidate": st.text(max_size=30), "sdpMid": st.none() | st.text(max_size=3)},
    optional={"sdpMLineIndex": st.none() | st.integers(-2, 5), "usernameFragment": st.none() | st.text(max_size=4)},
)
MESSAGES = st.fixed_dictionaries(
    {"type": st.sampled_from([*CLIENT_MESSAGE_TYPES, "welcome", "pong", "JOIN"]) | JSON_VALUES},
    optional={
        "id": st.text(max_size=70) | st.integers() | JSON_VALUES | st.text(st.characters(categories=["Cs"])),
        "room": st.sampled_from(["r", "s", "bad room", ""]) | JSON_VALUES,
        "name": st.text(max_size=70) | JSON_VALUES,
        "meta": st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3) | JSON_VALUES,
        "token": st.text(max_size=5),
        "to": PEER_REFS | JSON_VALUES,
        "from": PEER_REFS,
        "sdp": st.text(max_size=40) | JSON_VALUES,
        "candidate": CANDIDATES | JSON_VALUES,
        "data": JSON_VALUES,
    },
)
LIKELY_PEERS = st.sampled_from(["peer0", "peer0", "peer1", "peer2", "nobody"])
# Mostly well-formed messages, so that joins, relays and presence get exercised, not only the parse errors.
PLAUSIBLE = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("join"), "room": st.sampled_from(["r", "s", "t"])},
        optional={"name": st.text(max_size=8), "meta": st.dictionaries(st.text(max_size=4), JSON_LEAVES, max_size=2)},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["offer", "answer"]), "to": LIKELY_PEERS, "sdp": st.text(max_size=40)},
        optional={"from": PEER_REFS},
    ),
    st.fixed_dictionaries({"type": st.just("candidate"), "to": LIKELY_PEERS, "candidate": CANDIDATES}),
    st.fixed_dictionaries({"type": st.just("message"), "data": JSON_VALUES}, optional={"to": LIKELY_PEERS}),
    st.fixed_dictionaries({"type": st.sampled_from(["leave", "ping"])}),
).flatmap(
    lambda message: st.fixed_dictionaries(
        {}, optional={"id": st.text(max_size=8) | st.integers(), "extra": JSON_LEAVES}
    ).map(lambda extra: {**message, **extra})
)
TEXTS = (
    PLAUSIBLE.map(dumps)
    | PLAUSIBLE.map(dumps)
    | MESSAGES.map(dumps)
    | JSON_VALUES.map(dumps)
    | st.text(max_size=60)
    | st.sampled_from(['{"type":"message","data":NaN}', '{"type":"message","data":1e999}', '{"type":"join","room":"r"'])
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(joined_first=st.booleans(), texts=st.lists(TEXTS, min_size=1, max_size=8))
def test_any_text_yields_only_valid_server_messages(joined_first: bool, texts: list[str]) -> None:
    rooms = Rooms(max_rooms=2, max_peers_per_room=3)
    other = Client(rooms)
    other.join("r")
    other.sink.take()
    fuzzed = Client(rooms)
    if joined_first:
        texts = ['{"type":"join","room":"r"}', *texts]
    for text in texts:
        run(fuzzed.session.handle_text(text))  # must never raise
        for sink in (fuzzed.sink, other.sink):
            for out in sink.texts:
                out.encode("utf-8")  # the transport can send it
                obj = pydantic_core.from_json(out, allow_inf_nan=False)  # strict JSON
                assert "to" not in obj  # never relayed
                message = parse_server_message(out)
                assert message.type != "error" or message.code in ErrorCode
                event(message.type if message.type != "error" else f"error {message.code}")
            sink.texts.clear()
    fuzzed.close()
    assert rooms.stats() == RoomCounts(rooms=1, peers=1)


class Budget:
    """A byte budget that does not refill: what a test's client may still spend."""

    def __init__(self, size: int) -> None:
        self.left = size

    def spend(self, size: int) -> bool:
        if size > self.left:
            return False
        self.left -= size
        return True

    def affords(self, size: int) -> bool:
        return size <= self.left


def a_full_room(rooms: Rooms, budget: Budget) -> tuple[Client, list[Client]]:
    sender = Client(rooms, budget=budget)
    sender.join("big")
    others = [Client(rooms) for _ in range(7)]
    for other in others:
        other.join("big")
    sender.sink.take()
    for other in others:
        other.sink.take()
    return sender, others


def test_a_broadcast_costs_its_size_for_every_recipient(rooms: Rooms) -> None:
    """A message without ``to`` becomes one copy per peer: its sender's byte budget pays for each copy, in one
    process as across a cluster; a message to one peer costs one copy."""
    budget = Budget(250_000)
    sender, others = a_full_room(rooms, budget)
    text = dumps({"type": "message", "data": "x" * 10_000, "id": 1})
    assert sender.send(text) == []  # 6 further copies charged: 60 KB of the 250 KB
    assert budget.left == 250_000 - 6 * len(text)
    for _ in range(3):
        assert sender.send(text) == []
    (refused,) = sender.send(text)  # 10 KB left: not the 60 KB a fifth broadcast costs
    assert refused["code"] == ErrorCode.RATE_LIMITED and refused["ref"] == 1 and "7 peers" in refused["message"]
    assert [len(o.sink.take()) for o in others] == [4] * 7
    to_one = dumps({"type": "message", "data": "x" * 10_000, "to": others[0].peer})
    assert sender.send(to_one) == [] and len(others[0].sink.take()) == 1  # nothing more charged
    assert budget.left == 250_000 - 24 * len(text)


def test_a_big_message_its_sender_could_not_pay_as_a_broadcast_is_refused_unparsed(rooms: Rooms) -> None:
    """Parsing 64 KB costs more than refusing it: past BIG_MESSAGE, what the budget could not pay as a broadcast
    is refused before it is parsed (no ``ref``: the id was never read), to one peer or not."""
    budget = Budget(90_000)
    sender, others = a_full_room(rooms, budget)
    big = {"type": "message", "data": "y" * BIG_MESSAGE, "id": 2}
    for message in (big, {**big, "to": others[0].peer}):
        (refused,) = sender.send(message)
        assert refused["code"] == ErrorCode.RATE_LIMITED and "ref" not in refused
    assert budget.left == 90_000 and all(o.sink.take() == [] for o in others)
    small = {"type": "message", "data": "z" * 1000, "id": 3}
    assert sender.send(small) == [] and all(len(o.sink.take()) == 1 for o in others)

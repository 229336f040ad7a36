"""Client message parsing: one row per contract row and per error, with the error code and the ref."""

from __future__ import annotations

from typing import Any

import pytest
from typing_extensions import is_typeddict

from signaling.protocol.errors import ErrorCode, SignalingError
from signaling.protocol.models import (
    CLIENT_MESSAGE_TYPES,
    Answer,
    Candidate,
    ClientMessage,
    Join,
    Leave,
    Message,
    Offer,
    Ping,
)
from signaling.protocol.parse import non_finite_error, parse_client_message
from tests.protocol.samples import CAND, dumps

# ---------------------------------------------------------------------------------------------------------------
# Valid client messages: one row per contract row (and per optional field)

VALID: list[tuple[str, dict[str, Any], type, dict[str, Any]]] = [
    ("join-minimal", {"type": "join", "room": "r"}, Join, {"room": "r", "name": None, "meta": None}),
    (
        "join-full",
        {"type": "join", "room": "A-z_09", "name": "alice", "meta": {"a": [1, 2]}, "token": "t", "resume": "x"},
        Join,
        {"room": "A-z_09", "name": "alice", "meta": {"a": [1, 2]}, "token": "t", "resume": "x"},
    ),
    ("join-room-64", {"type": "join", "room": "r" * 64}, Join, {"room": "r" * 64}),
    ("join-name-64", {"type": "join", "room": "r", "name": "n" * 64}, Join, {"name": "n" * 64}),
    ("join-name-empty", {"type": "join", "room": "r", "name": ""}, Join, {"name": ""}),
    ("join-meta-empty", {"type": "join", "room": "r", "meta": {}}, Join, {"meta": {}}),
    ("join-meta-1024-bytes", {"type": "join", "room": "r", "meta": {"k": "x" * 1016}}, Join, {}),
    ("leave", {"type": "leave"}, Leave, {}),
    ("offer", {"type": "offer", "to": "p", "sdp": "v=0\r\n"}, Offer, {"to": "p", "sdp": "v=0\r\n"}),
    ("answer", {"type": "answer", "to": "p", "sdp": ""}, Answer, {"to": "p", "sdp": ""}),
    ("candidate", {"type": "candidate", "to": "p", "candidate": CAND}, Candidate, {"candidate": CAND}),
    (
        "candidate-nulls-ufrag",
        {
            "type": "candidate",
            "to": "p",
            "candidate": {**CAND, "sdpMid": None, "sdpMLineIndex": None, "usernameFragment": "u"},
        },
        Candidate,
        {"candidate": {**CAND, "sdpMid": None, "sdpMLineIndex": None, "usernameFragment": "u"}},
    ),
    ("candidate-end", {"type": "candidate", "to": "p", "candidate": None}, Candidate, {"candidate": None}),
    ("message-to", {"type": "message", "to": "p", "data": {"x": 1}}, Message, {"to": "p", "data": {"x": 1}}),
    ("message-broadcast", {"type": "message", "data": [1, "a", None]}, Message, {"to": None, "data": [1, "a", None]}),
    ("message-data-null", {"type": "message", "data": None}, Message, {"data": None}),
    ("ping", {"type": "ping"}, Ping, {}),
    ("id-string", {"type": "ping", "id": "x" * 64}, Ping, {"id": "x" * 64}),
    ("id-int", {"type": "ping", "id": -7}, Ping, {"id": -7}),
    ("id-zero", {"type": "ping", "id": 0}, Ping, {"id": 0}),
    ("unknown-fields-ignored", {"type": "ping", "x": {"deep": [1]}, "from": "me"}, Ping, {}),
    (
        "unknown-fields-in-candidate-dropped",
        {"type": "candidate", "to": "p", "candidate": {**CAND, "extra": 1}},
        Candidate,
        {"candidate": CAND},
    ),
]


def fields_of(msg: ClientMessage) -> dict[str, Any]:
    """A parsed message's fields: a relayed one is a plain dict already (models.py), the others are models."""
    return dict(msg) if isinstance(msg, dict) else msg.model_dump()


@pytest.mark.parametrize(("obj", "cls", "fields"), [r[1:] for r in VALID], ids=[r[0] for r in VALID])
def test_valid_client_messages(obj: dict[str, Any], cls: type, fields: dict[str, Any]) -> None:
    for text in (dumps(obj), dumps(obj).encode()):
        msg = parse_client_message(text)
        assert type(msg) is (dict if is_typeddict(cls) else cls)
        got = fields_of(msg)
        assert got["type"] == obj["type"]
        for name, value in fields.items():
            assert got.get(name) == value
        assert got.get("id") == obj.get("id")


def test_client_from_is_not_a_field() -> None:
    msg = parse_client_message(dumps({"type": "offer", "to": "p", "sdp": "s", "from": "forged"}))
    assert fields_of(msg) == {"type": "offer", "to": "p", "sdp": "s"}


def test_every_contract_type_has_a_model() -> None:
    assert set(CLIENT_MESSAGE_TYPES) == {"join", "leave", "offer", "answer", "candidate", "message", "ping"}


# ---------------------------------------------------------------------------------------------------------------
# Errors: code, ref (iff a valid id was sent) and a message naming the field

INFINITY_IN_CANDIDATE = '{"type":"candidate","to":"p","candidate":{"candidate":Infinity}}'
SEVERAL_PROBLEMS = "to: Input should be a valid string; sdp:"

ERRORS: list[tuple[str, str | bytes, ErrorCode, Any, str]] = [
    ("empty", "", ErrorCode.BAD_JSON, None, "not valid JSON"),
    ("truncated", '{"type":"ping"', ErrorCode.BAD_JSON, None, "not valid JSON"),
    ("trailing", '{"type":"ping"} x', ErrorCode.BAD_JSON, None, "not valid JSON"),
    ("single-quotes", "{'type':'ping'}", ErrorCode.BAD_JSON, None, ""),
    ("nan-in-meta", '{"type":"join","room":"r","meta":{"a":NaN}}', ErrorCode.BAD_JSON, None, ""),
    ("infinity-in-bad-field", INFINITY_IN_CANDIDATE, ErrorCode.BAD_JSON, None, ""),
    ("lone-surrogate-escape", '{"type":"message","data":"\\ud800"}', ErrorCode.BAD_JSON, None, "not valid JSON"),
    ("lone-surrogate-char", '{"type":"message","data":"\ud800"}', ErrorCode.BAD_JSON, None, "surrogate"),
    ("invalid-utf8-bytes", b'{"type":"ping","x":"\xff"}', ErrorCode.BAD_JSON, None, ""),
    ("array", "[1,2]", ErrorCode.INVALID_MESSAGE, None, "must be a JSON object, got an array"),
    ("string", '"join"', ErrorCode.INVALID_MESSAGE, None, "got a string"),
    ("number", "42", ErrorCode.INVALID_MESSAGE, None, "got a number"),
    ("null", "null", ErrorCode.INVALID_MESSAGE, None, "got null"),
    ("no-type", '{"id":3}', ErrorCode.INVALID_MESSAGE, 3, "type: Field required"),
    ("type-number", '{"type":1,"id":"a"}', ErrorCode.INVALID_MESSAGE, "a", "type: Input should be a valid string"),
    ("type-null", '{"type":null}', ErrorCode.INVALID_MESSAGE, None, "type: Input should be a valid string"),
    ("type-list", '{"type":["join"]}', ErrorCode.INVALID_MESSAGE, None, "type:"),
    ("unknown-type", '{"type":"hello","id":9}', ErrorCode.UNKNOWN_TYPE, 9, "unknown message type 'hello'"),
    ("unknown-type-case", '{"type":"JOIN"}', ErrorCode.UNKNOWN_TYPE, None, "'JOIN'"),
    ("server-type-from-client", '{"type":"welcome"}', ErrorCode.UNKNOWN_TYPE, None, "welcome"),
    ("join-no-room", '{"type":"join","id":"j"}', ErrorCode.INVALID_MESSAGE, "j", "room: Field required"),
    (
        "join-room-pattern",
        '{"type":"join","room":"a b","id":1}',
        ErrorCode.INVALID_MESSAGE,
        1,
        "room: String should match pattern '^[A-Za-z0-9_-]{1,64}$'",
    ),
    ("join-room-empty", '{"type":"join","room":""}', ErrorCode.INVALID_MESSAGE, None, "room: String should match"),
    ("join-room-65", dumps({"type": "join", "room": "r" * 65}), ErrorCode.INVALID_MESSAGE, None, "room:"),
    (
        "join-room-number",
        '{"type":"join","room":5}',
        ErrorCode.INVALID_MESSAGE,
        None,
        "room: Input should be a valid string",
    ),
    (
        "join-name-65",
        dumps({"type": "join", "room": "r", "name": "n" * 65}),
        ErrorCode.INVALID_MESSAGE,
        None,
        "name: String should have at most 64",
    ),
    (
        "join-meta-list",
        '{"type":"join","room":"r","meta":[1]}',
        ErrorCode.INVALID_MESSAGE,
        None,
        "meta: Input should be",
    ),
    (
        "join-meta-too-big",
        dumps({"type": "join", "room": "r", "meta": {"k": "x" * 1017}}),
        ErrorCode.INVALID_MESSAGE,
        None,
        "meta: must serialize to at most 1024 bytes",
    ),
    (
        "join-meta-overflow",
        '{"type":"join","room":"r","meta":{"a":1e400}}',
        ErrorCode.INVALID_MESSAGE,
        None,
        "meta: numbers must be finite",
    ),
    ("offer-no-to", '{"type":"offer","sdp":"s","id":2}', ErrorCode.INVALID_MESSAGE, 2, "to: Field required"),
    ("offer-no-sdp", '{"type":"offer","to":"p"}', ErrorCode.INVALID_MESSAGE, None, "sdp: Field required"),
    (
        "answer-sdp-number",
        '{"type":"answer","to":"p","sdp":1}',
        ErrorCode.INVALID_MESSAGE,
        None,
        "sdp: Input should be a valid string",
    ),
    (
        "candidate-missing",
        '{"type":"candidate","to":"p"}',
        ErrorCode.INVALID_MESSAGE,
        None,
        "candidate: Field required",
    ),
    (
        "candidate-not-object",
        '{"type":"candidate","to":"p","candidate":"c"}',
        ErrorCode.INVALID_MESSAGE,
        None,
        "candidate:",
    ),
    (
        "candidate-no-sdpmid",
        dumps({"type": "candidate", "to": "p", "candidate": {"candidate": "c", "sdpMLineIndex": 0}}),
        ErrorCode.INVALID_MESSAGE,
        None,
        "candidate.sdpMid: Field required",
    ),
    (
        "candidate-index-float",
        dumps({"type": "candidate", "to": "p", "candidate": {**CAND, "sdpMLineIndex": 1.0}}),
        ErrorCode.INVALID_MESSAGE,
        None,
        "candidate.sdpMLineIndex: Input should be a valid integer",
    ),
    (
        "candidate-index-string",
        dumps({"type": "candidate", "to": "p", "candidate": {**CAND, "sdpMLineIndex": "0"}}),
        ErrorCode.INVALID_MESSAGE,
        None,
        "candidate.sdpMLineIndex:",
    ),
    ("message-no-data", '{"type":"message","to":"p"}', ErrorCode.INVALID_MESSAGE, None, "data: Field required"),
    (
        "message-to-number",
        '{"type":"message","to":1,"data":1}',
        ErrorCode.INVALID_MESSAGE,
        None,
        "to: Input should be a valid string",
    ),
    ("id-float", '{"type":"ping","id":1.5}', ErrorCode.INVALID_MESSAGE, None, "id: must be a string of at most 64"),
    ("id-bool", '{"type":"ping","id":true}', ErrorCode.INVALID_MESSAGE, None, "id: must be"),
    ("id-too-long", dumps({"type": "ping", "id": "x" * 65}), ErrorCode.INVALID_MESSAGE, None, "id: must be"),
    ("id-object", '{"type":"ping","id":{}}', ErrorCode.INVALID_MESSAGE, None, "id: must be"),
    ("unknown-type-bad-id", '{"type":"nope","id":[1]}', ErrorCode.UNKNOWN_TYPE, None, "nope"),
    ("several-problems", '{"type":"offer","to":1,"sdp":2}', ErrorCode.INVALID_MESSAGE, None, SEVERAL_PROBLEMS),
]


@pytest.mark.parametrize(("text", "code", "ref", "fragment"), [r[1:] for r in ERRORS], ids=[r[0] for r in ERRORS])
def test_client_errors(text: str | bytes, code: ErrorCode, ref: Any, fragment: str) -> None:
    with pytest.raises(SignalingError) as info:
        parse_client_message(text)
    assert info.value.code is code
    assert info.value.ref == ref
    assert type(info.value.ref) is type(ref)
    assert fragment in info.value.message
    assert info.value.message  # always something to read


def test_unknown_type_message_is_bounded() -> None:
    with pytest.raises(SignalingError) as info:
        parse_client_message(dumps({"type": "x" * 10_000}))
    assert info.value.code is ErrorCode.UNKNOWN_TYPE
    assert len(info.value.message) < 300


def test_many_problems_are_summarized() -> None:
    text = dumps({"type": "candidate", "to": 1, "candidate": {"candidate": 1, "sdpMid": 2, "sdpMLineIndex": "x"}})
    with pytest.raises(SignalingError) as info:
        parse_client_message(text)
    assert "(and 1 more)" in info.value.message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"type":"message","data":NaN}', ErrorCode.BAD_JSON),
        ('{"type":"message","data":[-Infinity]}', ErrorCode.BAD_JSON),
        ('{"type":"message","data":1e400}', ErrorCode.INVALID_MESSAGE),
    ],
    ids=["nan", "infinity", "overflow"],
)
def test_non_finite_error(text: str, code: ErrorCode) -> None:
    err = non_finite_error(text, "data", 4)
    assert err.code is code
    assert err.ref == (4 if code is ErrorCode.INVALID_MESSAGE else None)

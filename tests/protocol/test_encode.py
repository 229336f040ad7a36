"""The server message serializers: compact, valid server messages, None-valued optional fields omitted."""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
import pytest

from signaling.protocol import encode
from signaling.protocol.errors import ErrorCode
from signaling.protocol.models import IceServer, NonFiniteNumber, PeerInfo
from signaling.protocol.parse import parse_server_message
from tests.protocol.samples import CAND, CAND_UFRAG_NULL

# ---------------------------------------------------------------------------------------------------------------
# Serializers: compact, valid server messages, None-valued optional fields omitted

SERIALIZED: list[tuple[str, str, dict[str, Any]]] = [
    ("pong", encode.PONG_JSON, {"type": "pong"}),
    ("peer-left", encode.peer_left_json("P1"), {"type": "peer-left", "peer": "P1"}),
    (
        "peer-joined-bare",
        encode.peer_joined_json(PeerInfo(peer="P1", name=None, meta=None)),
        {"type": "peer-joined", "peer": "P1", "name": None, "meta": None},
    ),
    (
        "peer-joined-full",
        encode.peer_joined_json(PeerInfo(peer="P1", name="név", meta={"a": [1, {"b": None}]})),
        {"type": "peer-joined", "peer": "P1", "name": "név", "meta": {"a": [1, {"b": None}]}},
    ),
    ("offer", encode.relayed_offer_json("P1", 'v=0\r\n"q"'), {"type": "offer", "from": "P1", "sdp": 'v=0\r\n"q"'}),
    ("answer", encode.relayed_answer_json("P1", "v=0\r\n"), {"type": "answer", "from": "P1", "sdp": "v=0\r\n"}),
    ("candidate", encode.relayed_candidate_json("P1", CAND), {"type": "candidate", "from": "P1", "candidate": CAND}),
    (
        "candidate-ufrag-null",
        encode.relayed_candidate_json("P1", CAND_UFRAG_NULL),
        {"type": "candidate", "from": "P1", "candidate": {**CAND, "usernameFragment": None}},
    ),
    (
        "candidate-end",
        encode.relayed_candidate_json("P1", None),
        {"type": "candidate", "from": "P1", "candidate": None},
    ),
    (
        "message",
        encode.relayed_message_json("P1", {"z": 1, "a": "ü"}),
        {"type": "message", "from": "P1", "data": {"z": 1, "a": "ü"}},
    ),
    ("message-null", encode.relayed_message_json("P1", None), {"type": "message", "from": "P1", "data": None}),
    (
        "error-no-ref",
        encode.error_json(ErrorCode.NOT_JOINED, 'say "join"'),
        {"type": "error", "code": "not-joined", "message": 'say "join"'},
    ),
    (
        "error-ref-str",
        encode.error_json("bad-json", "m", "r1"),
        {"type": "error", "code": "bad-json", "message": "m", "ref": "r1"},
    ),
    (
        "error-ref-zero",
        encode.error_json("bad-json", "m", 0),
        {"type": "error", "code": "bad-json", "message": "m", "ref": 0},
    ),
    (
        "welcome-bare",
        encode.welcome_json("P1", "room", [], "[]"),
        {"type": "welcome", "peer": "P1", "room": "room", "peers": [], "iceServers": []},
    ),
    (
        "welcome-full",
        encode.welcome_json(
            "P2",
            "room",
            [PeerInfo(peer="P1", name="a", meta={"k": 1}), PeerInfo(peer="P3", name=None, meta=None)],
            encode.ice_servers_json(
                [IceServer(urls="stun:s"), IceServer(urls=["turn:t"], username="u", credential="c")]
            ),
            resume="tok",
            ref=5,
        ),
        {
            "type": "welcome",
            "peer": "P2",
            "room": "room",
            "peers": [{"peer": "P1", "name": "a", "meta": {"k": 1}}, {"peer": "P3", "name": None, "meta": None}],
            "iceServers": [{"urls": "stun:s"}, {"urls": ["turn:t"], "username": "u", "credential": "c"}],
            "resume": "tok",
            "ref": 5,
        },
    ),
]


@pytest.mark.parametrize(("text", "expected"), [r[1:] for r in SERIALIZED], ids=[r[0] for r in SERIALIZED])
def test_serializers(text: str, expected: dict[str, Any]) -> None:
    assert pydantic_core.from_json(text, allow_inf_nan=False) == expected
    assert list(json.loads(text)) == list(expected)  # key order as documented
    assert text == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)  # compact
    msg = parse_server_message(text)
    assert msg.type == expected["type"]


def test_relayed_message_refuses_non_finite_numbers() -> None:
    with pytest.raises(NonFiniteNumber):
        encode.relayed_message_json("P1", {"a": [float("inf")]})
    with pytest.raises(NonFiniteNumber):
        encode.relayed_message_json("P1", float("nan"))
    # The words alone are fine.
    assert encode.relayed_message_json("P1", "NaN Infinity") == '{"type":"message","from":"P1","data":"NaN Infinity"}'


def test_ice_servers_json_omits_none() -> None:
    assert encode.ice_servers_json([IceServer(urls="stun:a", username=None)]) == '[{"urls":"stun:a"}]'
    assert encode.ice_servers_json([]) == "[]"


@pytest.mark.parametrize(
    "sdp", ["v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n", 'quote " backslash \\ tab \t', "\u2028 \x00 \x1f é 🎥", ""]
)
def test_an_sdp_is_relayed_exactly_whatever_it_holds(sdp: str) -> None:
    assert json.loads(encode.relayed_offer_json("P1", sdp)) == {"type": "offer", "from": "P1", "sdp": sdp}


def test_a_candidate_index_too_big_for_64_bits_is_relayed_too() -> None:
    """orjson (the ``fast`` extra) refuses integers past 64 bits: such a candidate still goes out, exactly."""
    candidate = {"candidate": "candidate:1", "sdpMid": None, "sdpMLineIndex": 2**70}
    text = encode.relayed_candidate_json("P1", candidate)  # type: ignore[arg-type]
    assert json.loads(text)["candidate"] == candidate

"""The pure parts of WHIP and WHEP (signaling/interop/whip.py): who answers, trickle PATCH bodies, If-Match, the
Link headers, the statuses."""

from __future__ import annotations

import pytest

from signaling.interop.whip import (
    MAX_FRAGMENT_CANDIDATES,
    choose_receiver,
    endpoint_kind,
    ice_credentials,
    ice_link_headers,
    if_match,
    media_type,
    offer_error,
    offer_mids,
    parse_sdpfrag,
    quoted,
    status_for,
)
from signaling.protocol.models import IceServer, PeerInfo

OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\na=ice-ufrag:U1\r\na=ice-pwd:P1\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\na=ice-ufrag:U1\r\na=ice-pwd:P1\r\n"
)


def peer(pid: str, kind: str | None = None) -> PeerInfo:
    return PeerInfo(peer=pid, name=None, meta={"kind": kind} if kind else None)


def test_the_longest_present_peer_that_is_no_session_answers() -> None:
    peers = [peer("w" * 16, "whip"), peer("a" * 16), peer("b" * 16), peer("e" * 16, "whep")]
    assert choose_receiver(peers, None) == "a" * 16
    assert choose_receiver(peers, "b" * 16) == "b" * 16
    assert choose_receiver(peers, "w" * 16) == "w" * 16  # named: the client's choice
    assert choose_receiver(peers, "z" * 16) is None  # never a silent fallback
    assert choose_receiver([peer("w" * 16, "whip")], None) is None
    assert choose_receiver([], None) is None


def test_endpoint_kinds_and_media_types() -> None:
    assert endpoint_kind({"kind": "whip"}) == "whip" and endpoint_kind({"kind": "whep"}) == "whep"
    assert endpoint_kind({"kind": "other"}) is None and endpoint_kind(None) is None
    assert media_type("Application/SDP; charset=utf-8") == "application/sdp"
    assert media_type(None) == ""


def test_offers_mids_and_credentials() -> None:
    assert offer_error(OFFER) is None
    assert offer_error("hello") is not None and offer_error("v=0\r\ns=-\r\n") is not None
    assert offer_mids(OFFER) == {"a": 0, "v": 1}
    assert ice_credentials(OFFER) == ("U1", "P1")
    assert ice_credentials("v=0\r\n") == (None, None)


def test_a_trickle_fragment_becomes_candidates_of_the_offers_m_lines() -> None:
    body = (
        "a=ice-ufrag:U1\r\na=ice-pwd:P1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:v\r\n"
        "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
    )
    fragment = parse_sdpfrag(body, offer_mids(OFFER))
    assert (fragment.ufrag, fragment.pwd, fragment.end) == ("U1", "P1", True)
    assert fragment.candidates == [
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "v", "sdpMLineIndex": 1}
    ]
    # No a=mid: the first m-line of the offer (the bundle's transport).
    bare = parse_sdpfrag("a=candidate:2 1 udp 1 127.0.0.1 5001 typ host\n", offer_mids(OFFER))
    assert bare.candidates[0]["sdpMid"] == "a" and bare.candidates[0]["sdpMLineIndex"] == 0
    # A mid the offer does not have keeps its name, without an index.
    other = parse_sdpfrag("a=mid:x\r\na=candidate:3 1 udp 1 127.0.0.1 5002 typ host\r\n", offer_mids(OFFER))
    assert other.candidates[0]["sdpMid"] == "x" and other.candidates[0]["sdpMLineIndex"] is None


@pytest.mark.parametrize("body", ["garbage", "a=candidate:1\r\nnot sdp\r\n", "=x\r\n"])
def test_a_body_that_is_no_fragment_is_refused(body: str) -> None:
    with pytest.raises(ValueError):
        parse_sdpfrag(body, {})


def test_a_flood_of_candidates_is_refused() -> None:
    line = "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"
    assert len(parse_sdpfrag(line * MAX_FRAGMENT_CANDIDATES, {}).candidates) == MAX_FRAGMENT_CANDIDATES
    with pytest.raises(ValueError, match="candidates"):
        parse_sdpfrag(line * (MAX_FRAGMENT_CANDIDATES + 1), {})


def test_if_match() -> None:
    tag = '"abc"'
    assert if_match(None, tag) and if_match("*", tag) and if_match(tag, tag) and if_match('"x", "abc"', tag)
    assert not if_match('"x"', tag) and not if_match("W/" + tag, tag) and not if_match("abc", tag)


def test_link_headers_carry_what_welcome_gives() -> None:
    servers = [
        IceServer(urls="stun:stun.example:3478"),
        IceServer(urls=["turn:t.example:3478?transport=udp", "turns:t.example:5349"], username="1:p", credential='a"b'),
        IceServer(urls=["stun:bad>url", "stun:ok.example"]),
    ]
    assert ice_link_headers(servers) == [
        '<stun:stun.example:3478>; rel="ice-server"',
        '<turn:t.example:3478?transport=udp>; rel="ice-server"; username="1:p"; credential="a\\"b"; '
        'credential-type="password"',
        '<turns:t.example:5349>; rel="ice-server"; username="1:p"; credential="a\\"b"; credential-type="password"',
        '<stun:ok.example>; rel="ice-server"',
    ]
    assert quoted('x\\y"') == '"x\\\\y\\""'


def test_statuses_of_signaling_errors() -> None:
    assert status_for("unauthorized") == 401 and status_for("room-full") == 409
    assert status_for("invalid-message") == 400 and status_for("unavailable") == 503
    assert status_for("rate-limited") == 429 and status_for("nonsense") == 500

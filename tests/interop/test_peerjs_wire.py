"""The PeerJS wire format on both JSON codecs (orjson when installed, pydantic_core otherwise): what is relayed,
what is ignored, and that no number a client sends comes out as something JSON.parse would refuse."""

from __future__ import annotations

import json

import pytest

from signaling.interop.peerjs import wire


@pytest.fixture(params=[True, False], ids=["orjson", "pydantic_core"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    loads, dumps = wire.codec(fast=request.param)
    monkeypatch.setattr(wire, "_loads", loads)
    monkeypatch.setattr(wire, "_dumps", dumps)


@pytest.mark.usefixtures("codec")
def test_a_relayed_message_is_rewritten_with_src() -> None:
    got = wire.parse('{"dst":"bob","payload":{"a":[1,2.5,"é",null]},"src":"x","type":"OFFER","z":1}', "alice")
    assert isinstance(got, wire.Relayed) and (got.type, got.dst) == ("OFFER", "bob")
    assert json.loads(got.text) == {
        "type": "OFFER",
        "src": "alice",
        "dst": "bob",
        "payload": {"a": [1, 2.5, "é", None]},
    }
    assert wire.parse('{"type":"LEAVE","dst":"bob","payload":null}', "a").text.endswith(',"payload":null}')  # type: ignore[union-attr]
    assert wire.parse('{"type":"LEAVE"}', "a") == wire.Relayed("LEAVE", None, "")
    assert wire.parse('{"type":"HEARTBEAT"}', "a") == wire.HEARTBEAT


@pytest.mark.usefixtures("codec")
@pytest.mark.parametrize(
    "text",
    [
        "",
        "nope",
        "[]",
        '"OFFER"',
        '{"type":"FOO","dst":"b"}',
        '{"type":1}',
        '{"type":"OFFER","dst":"b","payload":NaN}',
        '{"type":"OFFER","dst":"b","payload":1e999}',
        '{"type":"OFFER","dst":"b","payload":-Infinity}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_what_is_not_a_message_is_ignored(text: str) -> None:
    assert wire.parse(text, "a") is None


@pytest.mark.usefixtures("codec")
def test_big_integers_come_out_as_json() -> None:
    got = wire.parse('{"type":"OFFER","dst":"b","payload":123456789012345678901234567890}', "a")
    assert got is not None and isinstance(json.loads(got.text)["payload"], int | float)  # type: ignore[union-attr]


def test_ids_and_keys() -> None:
    assert wire.valid_id("alice") and wire.valid_id("a-b_c d") and wire.valid_id("0f8fad5b-d9cb-469f-a165-70867728950e")
    for bad in ("", "a.b", "a|b", "a,b", "-a", "a-", "a  b", "x" * 65):
        assert not wire.valid_id(bad), bad
    assert wire.valid_key("peerjs") and not wire.valid_key("a.b")
    assert wire.peer_of("k", "alice") == "k.alice" and wire.room_of("k") == "peerjs.k"

"""events.py: every event is immutable (what the core reported cannot be changed on its way through the owner) and
compares by type and value, as the tests compare them."""

from __future__ import annotations

import dataclasses

import pytest

from signaling.ws import events as ev
from signaling.ws.exceptions import HandshakeError, InvalidHandshake
from signaling.ws.http11 import Headers, Request, Response

REQUEST = Request("GET", "/", (1, 1), Headers())

#: One instance of each event, and a field to try to change.
EVENTS = [
    (ev.RequestReceived(REQUEST), "request"),
    (ev.BadRequest(HandshakeError(400, "bad")), "error"),
    (ev.HandshakeComplete(Response(101), None), "subprotocol"),
    (ev.HandshakeFailed(InvalidHandshake("wrong")), "error"),
    (ev.TextMessage("text"), "data"),
    (ev.BinaryMessage(b"bytes"), "data"),
    (ev.PingReceived(b"p"), "data"),
    (ev.PongReceived(b"p"), "data"),
    (ev.CloseReceived(1000, "bye"), "code"),
    (ev.Failed(1002, "bad frame"), "reason"),
]


@pytest.mark.parametrize(("event", "field"), EVENTS, ids=lambda v: type(v).__name__ if not isinstance(v, str) else v)
def test_frozen(event: ev.Event, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, field, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(event, field)


def test_every_event_is_covered() -> None:
    assert {type(event) for event, _ in EVENTS} == set(ev.Event.__args__)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (ev.TextMessage("x"), ev.TextMessage("x"), True),
        (ev.TextMessage("x"), ev.TextMessage("y"), False),
        (ev.BinaryMessage(b"x"), ev.BinaryMessage(b"x"), True),
        (ev.PingReceived(b"x"), ev.PongReceived(b"x"), False),
        (ev.CloseReceived(1000, ""), ev.Failed(1000, ""), False),
    ],
    ids=["same-text", "other-text", "same-bytes", "ping-is-not-pong", "close-is-not-failed"],
)
def test_equality_is_by_type_and_value(a: ev.Event, b: ev.Event, equal: bool) -> None:
    assert (a == b) is equal

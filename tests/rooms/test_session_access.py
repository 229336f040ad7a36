"""Session: who may join (the authorize hook, a name the grant imposes) and the ICE servers a peer gets."""

from __future__ import annotations

import base64
import hashlib
import hmac

from signaling.protocol.errors import ErrorCode, SignalingError
from signaling.protocol.models import IceServer, Join
from signaling.rooms.ice import IceServerList, TurnCredentials
from tests.rooms.clients import Client, RoomCounts, Rooms


def test_authorize_refuses_and_accepts(rooms: Rooms) -> None:
    seen: list[Join] = []

    def authorize(join: Join) -> None:
        seen.append(join)
        if join.token != "good":
            raise SignalingError(ErrorCode.UNAUTHORIZED, "token missing or invalid")
        return None

    client = Client(rooms, authorize=authorize)
    replies = client.send({"type": "join", "room": "r", "id": 3})
    assert replies == [{"type": "error", "code": "unauthorized", "message": "token missing or invalid", "ref": 3}]
    assert rooms.stats() == RoomCounts(rooms=0, peers=0)
    assert client.join("r", token="good")["type"] == "welcome"
    assert [j.token for j in seen] == [None, "good"]


def test_a_name_the_grant_imposes_wins_over_the_clients(rooms: Rooms) -> None:
    other = Client(rooms)
    other.join("r")
    client = Client(rooms, authorize=lambda join: "From Token")
    client.join("r", name="Spoofed")
    assert rooms.peers_in("r")[1].name == "From Token"
    assert other.sink.take() == [{"type": "peer-joined", "peer": client.peer, "name": "From Token", "meta": None}]


def test_turn_credentials_in_welcome_and_refreshed_at_half_life(rooms: Rooms) -> None:
    secret, now = "s3cret", [1_000_000.0]
    turn = TurnCredentials(secret, ["turn:127.0.0.1:3478?transport=udp"], ttl=600)
    stun = IceServer(urls="stun:127.0.0.1:3478")
    client = Client(rooms, ice_servers=IceServerList([stun], turn), clock=lambda: now[0])
    servers = client.join("r")["iceServers"]
    assert servers[0] == {"urls": "stun:127.0.0.1:3478"}
    username = f"{1_000_600}:{client.peer}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    assert servers[1] == {
        "urls": ["turn:127.0.0.1:3478?transport=udp"],
        "username": username,
        "credential": base64.b64encode(digest).decode(),
    }
    assert not client.session.refresh_ice_servers(now[0] + 299)  # not yet half-way
    now[0] += 300
    assert client.session.refresh_ice_servers(now[0])
    (update,) = client.sink.take()
    assert update["type"] == "ice-servers"
    assert update["iceServers"][1]["username"] == f"{1_000_900}:{client.peer}"
    assert not client.session.refresh_ice_servers(now[0])  # the next one is due at the new half-life
    assert turn.issued == 2


def test_no_refresh_without_turn_or_after_leaving(rooms: Rooms) -> None:
    plain = Client(rooms)
    plain.join("r")
    assert not plain.session.refresh_ice_servers(10**12)
    turn = TurnCredentials("k", ["turn:t"], ttl=60)
    client = Client(rooms, ice_servers=IceServerList((), turn), clock=lambda: 0.0)
    client.join("r")
    client.send({"type": "leave"})
    assert not client.session.refresh_ice_servers(10**12)

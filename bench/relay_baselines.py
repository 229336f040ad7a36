"""Minimal signaling relays on ``websockets`` and ``picows``: the baselines of the relay benchmark.

Run: python -m bench.relay_baselines --lib {websockets,websockets-orjson,picows} --loop {asyncio,uvloop}
     --port P [--host 127.0.0.1] [--max-seconds 600]

Each speaks the subset of protocol v1 that the benchmark uses, the way ../shared/perf-anchors.md section 3 did
("loads, pop to, set from, dumps compact, send to the partner"), and nothing more:

- ``{"type":"join","room":R}`` -> ``welcome`` (``peer``, ``room``, ``peers``, ``iceServers: []``) to the joiner,
  ``peer-joined`` to everyone else in the room;
- ``offer``, ``answer``, ``candidate``, ``message``: ``to`` removed, ``from`` set, the rest relayed as parsed to
  the peer ``to`` in the sender's room (``message`` without ``to``: every other peer of the room);
- a disconnect -> ``peer-left`` to the rest of the room; an empty room is dropped.

No validation beyond that: no schema, no rate limit, no error replies (a message that does not fit is dropped).
Peer ids are ``secrets.token_urlsafe(12)`` (16 characters), as in our server.

- ``websockets``: the asyncio API, ``compression=None``, stdlib ``json`` (compact separators).
- ``websockets-orjson``: the same, reading with ``recv(decode=False)`` and sending orjson's bytes with
  ``send(..., text=True)`` (the anchors' variant).
- ``picows``: a callback ``WSListener``, stdlib ``json``; picows' default transport (aiofastnet when installed).

The server stops on SIGTERM/SIGINT, or by itself after ``--max-seconds``, so no run outlives its bench.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bench import common

LIBS = ("websockets", "websockets-orjson", "picows")
RELAYED = frozenset(("offer", "answer", "candidate", "message"))
T = TypeVar("T")

_dumps = json.JSONEncoder(separators=(",", ":")).encode  # what json.dumps(..., separators=...) ends up calling
_loads = json.loads


def new_peer_id() -> str:
    return secrets.token_urlsafe(12)


def welcome(peer: str, room: str, others: list[str]) -> dict[str, Any]:
    peers = [{"peer": p, "name": None, "meta": None} for p in others]
    return {"type": "welcome", "peer": peer, "room": room, "peers": peers, "iceServers": []}


def peer_joined(peer: str) -> dict[str, Any]:
    return {"type": "peer-joined", "peer": peer, "name": None, "meta": None}


def relay_targets(msg: dict[str, Any], peer: str, members: dict[str, T]) -> list[T]:
    """Whom a relayed message goes to (its ``to``, or the room for a ``message`` without one); sets ``from``."""
    to = msg.pop("to", None)
    msg["from"] = peer
    if to is not None:
        target = members.get(to)
        return [target] if target is not None else []
    if msg.get("type") == "message":
        return [each for other, each in list(members.items()) if other != peer]
    return []


# ------------------------------------------------------------------------------------------ websockets


async def start_websockets(host: str, port: int, use_orjson: bool) -> Callable[[], Awaitable[None]]:
    import orjson
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    rooms: dict[str, dict[str, ServerConnection]] = {}

    async def deliver(target: ServerConnection, text: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await target.send(text, text=True)

    async def handler(ws: ServerConnection) -> None:
        peer: str | None = None
        members: dict[str, ServerConnection] = {}
        room = ""
        loads: Callable[[Any], Any] = orjson.loads if use_orjson else _loads
        dumps: Callable[[Any], str | bytes] = orjson.dumps if use_orjson else _dumps
        try:
            while True:
                raw = await ws.recv(decode=not use_orjson)  # orjson parses the UTF-8 bytes itself
                msg = loads(raw)
                kind = msg.get("type")
                if kind in RELAYED and peer is not None:
                    targets = relay_targets(msg, peer, members)
                    text = dumps(msg)
                    for target in targets:
                        await deliver(target, text)
                elif kind == "join" and peer is None:
                    room = msg["room"]
                    members = rooms.setdefault(room, {})
                    peer = new_peer_id()
                    others = list(members)
                    members[peer] = ws
                    await ws.send(dumps(welcome(peer, room, others)), text=True)
                    announce = dumps(peer_joined(peer))
                    for other in others:
                        other_ws = members.get(other)
                        if other_ws is not None:
                            await deliver(other_ws, announce)
        except ConnectionClosed:
            pass
        finally:
            if peer is not None:
                members.pop(peer, None)
                if not members:
                    rooms.pop(room, None)
                else:
                    left = dumps({"type": "peer-left", "peer": peer})
                    for each in list(members.values()):
                        await deliver(each, left)

    server = await serve(handler, host, port, compression=None)

    async def close() -> None:
        server.close()
        await server.wait_closed()

    return close


# ------------------------------------------------------------------------------------------ picows


async def start_picows(host: str, port: int) -> Callable[[], Awaitable[None]]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

    rooms: dict[str, dict[str, Relay]] = {}
    text_type = WSMsgType.TEXT

    class Relay(WSListener):
        __slots__ = ("members", "peer", "room", "transport")

        def __init__(self) -> None:
            super().__init__()
            self.transport: WSTransport | None = None
            self.peer: str | None = None
            self.room = ""
            self.members: dict[str, Relay] = {}

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport

        def send(self, text: str) -> None:
            if self.transport is not None:
                self.transport.send(text_type, text.encode())

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type != text_type:
                common.answer_close(transport, frame)
                return
            msg = _loads(frame.get_payload_as_utf8_text())
            kind = msg.get("type")
            peer = self.peer
            if kind in RELAYED and peer is not None:
                targets = relay_targets(msg, peer, self.members)
                text = _dumps(msg)
                for target in targets:
                    target.send(text)
            elif kind == "join" and peer is None:
                self.room = msg["room"]
                members = self.members = rooms.setdefault(self.room, {})
                peer = self.peer = new_peer_id()
                present = list(members.values())
                members[peer] = self
                self.send(_dumps(welcome(peer, self.room, [o.peer for o in present if o.peer])))
                announce = _dumps(peer_joined(peer))
                for relay in present:
                    relay.send(announce)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            self.transport = None
            peer = self.peer
            if peer is None:
                return
            self.peer = None
            members = self.members
            members.pop(peer, None)
            if not members:
                rooms.pop(self.room, None)
                return
            left = _dumps({"type": "peer-left", "peer": peer})
            for each in list(members.values()):
                each.send(left)

    def factory(request: WSUpgradeRequest) -> WSListener:
        return Relay()

    server = await ws_create_server(factory, host, port)

    async def close() -> None:
        server.close()

    return close


STARTERS: dict[str, Callable[[str, int], Awaitable[Callable[[], Awaitable[None]]]]] = {
    "websockets": lambda host, port: start_websockets(host, port, use_orjson=False),
    "websockets-orjson": lambda host, port: start_websockets(host, port, use_orjson=True),
    "picows": start_picows,
}


async def serve(lib: str, host: str, port: int, max_seconds: float) -> None:
    close = await STARTERS[lib](host, port)
    await common.serve_until_stopped(port, close, max_seconds)


def main() -> None:
    args = common.server_parser(__doc__, LIBS, port_required=True).parse_args()
    common.run_server(serve(args.lib, args.host, args.port, args.max_seconds), args.loop)


if __name__ == "__main__":
    main()

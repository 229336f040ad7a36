"""The application behind the transport's tests: the product's echo, plus what a test needs to see or steer.

Transport tests (tests/ws, tests/interop) talk to ``signaling.app.echo.EchoApp``, never to the signaling app, so
that rooms and the protocol cannot change what they see. Where plain echo is all a test needs it uses EchoApp
itself (the ``echo_server`` fixture); where it needs more it uses ``ScriptedEchoApp`` below.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from signaling.app.echo import EchoApp
from signaling.ws.aio.server import ServerConnection, Upgrade, WebSocketHandler
from signaling.ws.exceptions import ConnectionClosed
from signaling.ws.http11 import Request, Response

__all__ = ["ScriptedEchoApp"]

#: The orders a script may give, in the order they run.
ORDERS = ("relay", "send", "big", "flood", "close")


class ScriptedEchoApp(EchoApp):
    """EchoApp (every path upgrades, through EchoApp's own echo handler), plus two things for tests.

    ``closes`` receives the ConnectionClosed of each connection that ends, as the server saw it (``on_close``).

    A text that is a JSON object whose keys are all orders is a script, run instead of echoed; any other message
    is echoed. Orders, run in this order whatever the order of the keys:

    * ``{"relay": text}``: send ``text`` to every other open connection on the same request path;
    * ``{"send": ["a", "b"]}``: send these texts back;
    * ``{"big": n}``: send back one text of ``n`` bytes;
    * ``{"flood": [count, size]}``: send back ``count`` texts of ``size`` bytes, numbered ``00000``, ``00001``...
    * ``{"close": [code, reason]}``: start the closing handshake.

    E.g. ``{"send": ["one", "two"], "close": [1000, "done"]}``; ``{"relay": "hi", "send": ["relayed"]}`` answers
    "relayed" once the relay is written.
    """

    def __init__(self, subprotocols: tuple[str, ...] = ()) -> None:
        super().__init__(subprotocols)
        self.closes: asyncio.Queue[ConnectionClosed] = asyncio.Queue()
        self.handlers: list[_Scripted] = []

    def handle_request(self, request: Request, peer: tuple[str, int] | None) -> Response | Upgrade:
        decision = super().handle_request(request, peer)
        if isinstance(decision, Upgrade):
            echo = decision.handler_factory
            return dataclasses.replace(decision, handler_factory=lambda ws: _Scripted(self, ws, echo(ws)))
        return decision


def _script(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, dict) and value and all(key in ORDERS for key in value):
        return value
    return None


class _Scripted:
    def __init__(self, app: ScriptedEchoApp, ws: ServerConnection, echo: WebSocketHandler) -> None:
        self.app = app
        self.ws = ws
        self.echo = echo
        self.path = ws.request.path if ws.request is not None else ""
        app.handlers.append(self)

    def on_text(self, text: str) -> None:
        script = _script(text)
        if script is None:
            self.echo.on_text(text)
            return
        ws = self.ws
        if "relay" in script:
            for other in self.app.handlers:
                if other is not self and other.path == self.path:
                    other.ws.send_text(script["relay"])
        for message in script.get("send", []):
            ws.send_text(message)
        if "big" in script:
            ws.send_text("b" * script["big"])
        if "flood" in script:
            count, size = script["flood"]
            for i in range(count):
                ws.send_text(f"{i:05d}".ljust(size, "m"))
        if "close" in script:
            ws.close(*script["close"])

    def on_binary(self, data: bytes) -> None:
        self.echo.on_binary(data)

    def on_close(self, closed: ConnectionClosed) -> None:
        self.echo.on_close(closed)
        self.app.handlers.remove(self)
        self.app.closes.put_nowait(closed)

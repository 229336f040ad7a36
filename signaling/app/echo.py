"""A plain WebSocket echo application: the target of Autobahn|Testsuite and of transport tests.

It is the transport alone, with no signaling on top, selected by ``signaling serve --echo``.
"""

from __future__ import annotations

from signaling.ws.aio.server import ServerConnection, Upgrade
from signaling.ws.exceptions import ConnectionClosed
from signaling.ws.handshake import is_upgrade_request
from signaling.ws.http11 import Headers, Request, Response

__all__ = ["EchoApp"]


class _Echo:
    __slots__ = ("ws",)

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    def on_text(self, text: str) -> None:
        self.ws.send_text(text)

    def on_binary(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def on_close(self, closed: ConnectionClosed) -> None:
        pass


class EchoApp:
    """Every upgrade request on any path becomes an echo connection; anything else gets 426."""

    def __init__(self, subprotocols: tuple[str, ...] = ()) -> None:
        self.subprotocols = subprotocols

    def handle_request(self, request: Request, peer: tuple[str, int] | None) -> Response | Upgrade:
        if is_upgrade_request(request):
            return Upgrade(_Echo, self.subprotocols)
        return Response(
            426,
            Headers([("Upgrade", "websocket"), ("Content-Type", "text/plain; charset=utf-8")]),
            b"this is a WebSocket echo endpoint\n",
        )

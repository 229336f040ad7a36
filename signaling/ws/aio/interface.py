"""What an application plugs into the asyncio server, and the server's settings.

Apart from server.py so that an application (and its tests) can read the contract without the machinery.
"""

from __future__ import annotations

import ipaddress
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from ..exceptions import ConnectionClosed
from ..http11 import Request, Response

if TYPE_CHECKING:
    from .server import ServerConnection

__all__ = ["App", "IPNetwork", "Later", "ServerConfig", "Upgrade", "WebSocketHandler"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebSocketHandler(Protocol):
    """What the application plugs into an accepted WebSocket. Called on the event loop, never concurrently."""

    def on_text(self, text: str) -> None: ...

    def on_binary(self, data: bytes) -> None: ...

    def on_close(self, closed: ConnectionClosed) -> None:
        """Once, when the connection is gone. ``closed.code``: the peer's close code, ours if we failed it, else
        1006; ``closed.by_peer``: whether the peer started the close (a client leaving on purpose) or not (we
        closed it, say with 1001 to drain, and it echoed; a failure; a dropped connection)."""


@dataclass(slots=True)
class Upgrade:
    """The application's answer to a request it wants as a WebSocket."""

    handler_factory: Callable[[ServerConnection], WebSocketHandler]
    subprotocols: tuple[str, ...] = ()
    extra_headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Later:
    """The application's answer to a plain request that it can only give after a wait (a read of shared state):
    sent when ``response`` is done, unless the client has gone meanwhile; a failure is answered with a 500."""

    response: Awaitable[Response]


class App(Protocol):
    """Routes each request: a plain HTTP response, or an Upgrade to WebSocket.

    ``peer`` is the TCP peer's address (host, port), or None when the transport does not know it.
    """

    def handle_request(self, request: Request, peer: tuple[str, int] | None) -> Response | Upgrade | Later: ...


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Frames one message may come in (more: 1009).
    max_fragments: int = DEFAULT_MAX_FRAGMENTS
    max_head_size: int = 8192
    #: Seconds a client has to complete its request head (slowloris protection).
    handshake_timeout: float = 10.0
    #: Seconds a message may take from its first frame to its last (an unfinished one holds memory): then 1008.
    message_timeout: float = 10.0
    #: Frames per second a connection may send on average, and in a burst (control frames and fragments
    #: included: they cost CPU without being messages). More: 1008. 0: no limit.
    frame_rate: float = 1000.0
    frame_burst: float = 4000.0
    #: Seconds between server pings on an idle-or-not connection; 0 disables keepalive.
    ping_interval: float = 20.0
    #: Seconds to wait for the pong before the connection is given up.
    ping_timeout: float = 20.0
    #: Seconds without any received message before closing; 0 disables.
    idle_timeout: float = 0.0
    #: Seconds to wait for the peer's close frame (or its EOF) after ours before aborting TCP.
    close_timeout: float = 5.0
    #: Concurrent WebSocket connections; more are refused with 503 at the handshake. 0: no limit.
    max_connections: int = 0
    #: TCP connections of any kind (bounded by the process's open-file limit); more get 503 at once. 0: none.
    max_sockets: int = 0
    #: TCP connections from one address that have not finished their request (slowloris); more get 429. 0: none.
    max_handshakes_per_ip: int = 16
    #: Addresses the per-address limit does not apply to (the reverse proxies everything comes through).
    exempt_networks: tuple[IPNetwork, ...] = ()
    #: Outgoing buffer watermarks per connection (bytes): above high, reading from that peer pauses, and so does
    #: reading from whoever writes to it, until it drains below low ...
    write_buffer_high: int = 256 * 1024
    write_buffer_low: int = 64 * 1024
    #: ... and a peer that stays above high this many seconds while others wait on it is a slow consumer, as is
    #: one whose unread backlog passes write_buffer_limit: closed with 1008.
    slow_consumer_timeout: float = 10.0
    write_buffer_limit: int = 4 * 1024 * 1024
    ssl: ssl_module.SSLContext | None = None
    backlog: int = 1024

    @property
    def close_wait(self) -> float:
        """The longest closing every connection waits for the close handshakes before it drops those left."""
        return self.close_timeout + 1.0

    def exempt(self, host: str) -> bool:
        if not self.exempt_networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.exempt_networks)

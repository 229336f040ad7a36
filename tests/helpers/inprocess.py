"""In-process servers on free loopback ports, for fixtures on whichever event loop a test folder uses.

tests/conftest.py wraps this for the per-test loop, tests/e2e/conftest.py for the session loop (one Chromium
for the whole session); both get the same servers this way.
"""

from __future__ import annotations

from typing import Any

from signaling.app.echo import EchoApp
from signaling.app.process import build_server
from signaling.app.settings import Settings
from signaling.app.tls import CertReloader
from signaling.app.wiring import SignalingApp
from signaling.ws.aio.server import App, ServerConfig, WebSocketServer

__all__ = ["InProcessServers", "server_url", "ws_url"]


def server_url(server: WebSocketServer, path: str = "/", *, ws: bool = False) -> str:
    """``server``'s URL on 127.0.0.1: ``http(s)://``, or ``ws(s)://`` with ``ws``; https/wss when it has TLS."""
    tls = server.config.ssl is not None
    scheme = ("wss" if tls else "ws") if ws else ("https" if tls else "http")
    return f"{scheme}://127.0.0.1:{server.port}{path}"


def ws_url(server: WebSocketServer, path: str = "/ws") -> str:
    """``server``'s WebSocket URL: ``ws://127.0.0.1:PORT/ws`` (``wss://`` when it has TLS)."""
    return server_url(server, path, ws=True)


class InProcessServers:
    """Starts servers on 127.0.0.1 (port 0 unless given) and closes every one of them at the end."""

    def __init__(self) -> None:
        self.servers: list[WebSocketServer] = []

    async def transport(self, app: App | None = None, **config: Any) -> WebSocketServer:
        """A bare transport server (the echo app unless ``app``), configured by ServerConfig fields."""
        config.setdefault("host", "127.0.0.1")
        config.setdefault("port", 0)
        return await self._started(WebSocketServer(app or EchoApp(), ServerConfig(**config)))

    async def signaling(self, **overrides: Any) -> WebSocketServer:
        """The full signaling server from Settings fields; ``certfile``/``keyfile`` give https:// and wss://."""
        overrides.setdefault("host", "127.0.0.1")
        overrides.setdefault("port", 0)
        settings = Settings(**overrides)
        ssl_context = None
        if settings.certfile is not None and settings.keyfile is not None:
            ssl_context = CertReloader(settings.certfile, settings.keyfile).context
        server = build_server(settings, ssl_context)
        if isinstance(server.app, SignalingApp):
            await server.app.start()
        await self._started(server)
        if isinstance(server.app, SignalingApp):
            server.app.ready = True  # as the process does once it listens
        return server

    async def _started(self, server: WebSocketServer) -> WebSocketServer:
        await server.start()
        self.servers.append(server)
        return server

    async def close(self) -> None:
        for server in self.servers:
            if isinstance(server.app, SignalingApp):
                await server.app.shutdown(server)
            await server.close()
        self.servers.clear()

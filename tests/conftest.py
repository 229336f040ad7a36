"""Fixtures shared by every test folder: in-process servers on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from signaling.config import Settings
from signaling.echo import EchoApp
from signaling.server import build_server
from signaling.ws.aio.server import App, ServerConfig, WebSocketServer

ServerFactory = Callable[..., Awaitable[WebSocketServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[..., Awaitable[WebSocketServer]]]:
    """``await start_server(app, **ServerConfig fields)``: a transport server on 127.0.0.1, a free port.

    Every server started is closed (1001 to whatever is still connected) when the test ends.
    """
    servers: list[WebSocketServer] = []

    async def start(app: App | None = None, **config: Any) -> WebSocketServer:
        config.setdefault("host", "127.0.0.1")
        config.setdefault("port", 0)
        server = WebSocketServer(app or EchoApp(), ServerConfig(**config))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def echo_server(start_server: ServerFactory) -> WebSocketServer:
    return await start_server(EchoApp())


@pytest.fixture
async def start_signaling() -> AsyncIterator[Callable[..., Awaitable[WebSocketServer]]]:
    """``await start_signaling(**Settings fields)``: the full signaling server (routes, rooms, relay) in-process.

    ``server.app`` is the SignalingApp (its ``hub`` can be inspected); URLs: ``ws://127.0.0.1:{server.port}/ws``.
    """
    servers: list[WebSocketServer] = []

    async def start(**overrides: Any) -> WebSocketServer:
        overrides.setdefault("host", "127.0.0.1")
        overrides.setdefault("port", 0)
        settings = Settings(**overrides)
        server = build_server(settings)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def signaling_server(start_signaling: ServerFactory) -> WebSocketServer:
    return await start_signaling()

"""Fixtures shared by every test folder: in-process servers on free loopback ports (per-test event loop).

tests/e2e/conftest.py defines the same fixtures on the session loop; both come from tests/helpers/inprocess.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from signaling.app.echo import EchoApp
from signaling.ws.aio.server import WebSocketServer
from tests.helpers.inprocess import InProcessServers

ServerFactory = Callable[..., Awaitable[WebSocketServer]]


@pytest.fixture
async def inprocess_servers() -> AsyncIterator[InProcessServers]:
    servers = InProcessServers()
    yield servers
    await servers.close()  # 1001 to whatever is still connected


@pytest.fixture
def start_server(inprocess_servers: InProcessServers) -> ServerFactory:
    """``await start_server(app, **ServerConfig fields)``: a transport server on 127.0.0.1, a free port."""
    return inprocess_servers.transport


@pytest.fixture
async def echo_server(start_server: ServerFactory) -> WebSocketServer:
    return await start_server(EchoApp())


@pytest.fixture
def start_signaling(inprocess_servers: InProcessServers) -> ServerFactory:
    """``await start_signaling(**Settings fields)``: the full signaling server (routes, rooms, relay).

    ``server.app`` is the SignalingApp (its ``hub`` can be inspected); URLs: ``ws://127.0.0.1:{server.port}/ws``.
    """
    return inprocess_servers.signaling


@pytest.fixture
async def signaling_server(start_signaling: ServerFactory) -> WebSocketServer:
    return await start_signaling()

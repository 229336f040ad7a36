"""Fixtures shared by every test folder: in-process servers on free loopback ports (per-test event loop).

tests/e2e/conftest.py defines the same fixtures on the session loop; both come from tests/helpers/inprocess.py.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from signaling.app.echo import EchoApp
from signaling.ws.aio.server import WebSocketServer
from tests.helpers.inprocess import InProcessServers
from tests.helpers.redis import READY, redis_argv
from tests.helpers.server_process import ServerProcess, running_process

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

    ``server.app`` is the SignalingApp (its ``backends`` can be inspected); URLs: ``ws://127.0.0.1:{server.port}/ws``.
    """
    return inprocess_servers.signaling


@pytest.fixture
async def signaling_server(start_signaling: ServerFactory) -> WebSocketServer:
    return await start_signaling()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One redis-server for the whole run; tests keep apart by key prefix (``redis_settings``)."""
    workdir: Path = tmp_path_factory.mktemp("redis")
    with running_process(redis_argv(workdir), name="redis-server", ready_log=READY, ok_returncodes=(0, -15)) as server:
        yield server


_prefixes = itertools.count(1)


@pytest.fixture
def redis_settings(redis_server: ServerProcess) -> dict[str, str]:
    """Settings that make a server a node of this test's own cluster on the shared redis-server."""
    return {"redis_url": redis_url(redis_server), "redis_prefix": f"test{next(_prefixes)}"}


def redis_url(server: ServerProcess) -> str:
    return f"redis://127.0.0.1:{server.port}/0"

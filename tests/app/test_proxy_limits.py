"""The per-address limits at their defaults, over real loopback sockets: a proxy on the same host is trusted, the
client it names is limited, a direct loopback client is not, and the rest of 127.0.0.0/8 is an ordinary address
(the benchmarks' attackers come from there).

README, "Access control" says what counts per address and why; these tests hold it to that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from signaling.app.settings import LOOPBACK, Settings
from signaling.app.wiring import SignalingApp
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.exceptions import InvalidStatus

pytestmark = pytest.mark.timeout(60)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
DEFAULTS = Settings.model_fields
MAX_PER_ADDRESS = DEFAULTS["max_connections_per_ip"].default
BURST = DEFAULTS["connection_burst_per_ip"].default
#: What a client in a test's address block sends through the proxy.
FORWARDED = [("X-Forwarded-For", "198.51.100.7")]


def settings(**values: Any) -> Settings:
    """Settings from these values and the environment (mypy wants every field of a direct call)."""
    return Settings(**values)


def rejections(server: WebSocketServer) -> dict[str, int]:
    app = server.app
    assert isinstance(app, SignalingApp)
    return dict(app.rejections)


@contextlib.asynccontextmanager
async def opened(url: str, count: int, headers: list[tuple[str, str]] | None = None) -> AsyncIterator[None]:
    """``count`` connections opened one after the other and held open until the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        conns: list[ClientConnection] = []
        for _ in range(count):
            conns.append(await stack.enter_async_context(connect(url, extra_headers=headers or ())))
        yield


async def refused(url: str, headers: list[tuple[str, str]] | None = None) -> int:
    with pytest.raises(InvalidStatus) as info:
        await connect(url, extra_headers=headers or ())
    return info.value.status


def test_loopback_proxies_are_trusted_by_default_and_none_trusts_no_one() -> None:
    assert settings().trusted_proxies == list(LOOPBACK) == ["127.0.0.1", "::1"]
    for off in ("none", "None", ""):
        assert settings(trusted_proxies=off).trusted_proxies == []


def test_none_in_the_environment_trusts_no_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty variable counts as unset (the default), so the environment says ``none``."""
    monkeypatch.setenv("SIGNALING_TRUSTED_PROXIES", "")
    assert settings().trusted_proxies == list(LOOPBACK)
    monkeypatch.setenv("SIGNALING_TRUSTED_PROXIES", "none")
    assert settings().trusted_proxies == []


async def test_a_direct_loopback_burst_of_100_is_not_refused(start_signaling: ServerFactory) -> None:
    """A local test tool (or a proxy that names no one) is not a client: over both the burst and the cap."""
    server = await start_signaling()
    async with opened(f"ws://127.0.0.1:{server.port}/ws", 100):
        assert len(server.connections) == 100
    assert rejections(server) == {}


async def test_the_client_a_loopback_proxy_names_is_limited(start_signaling: ServerFactory) -> None:
    """At the defaults the forwarded client gets its burst of new connections, then 429; with the rate off, its
    64 concurrent connections, then 429. Another client through the same proxy is not affected."""
    server = await start_signaling()
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with opened(url, BURST, FORWARDED):
        assert await refused(url, FORWARDED) == 429
        assert rejections(server) == {"connection_rate_per_ip": 1}
        async with connect(url, extra_headers=[("X-Forwarded-For", "198.51.100.8")]):
            pass
    unrated = await start_signaling(connection_rate_per_ip=0)
    url = f"ws://127.0.0.1:{unrated.port}/ws"
    async with opened(url, MAX_PER_ADDRESS, FORWARDED):
        assert await refused(url, FORWARDED) == 429
        assert rejections(unrated) == {"connections_per_ip": 1}
        async with connect(url):  # the proxy itself is still let in
            pass


async def test_forwarded_headers_from_a_peer_not_trusted_are_ignored(start_signaling: ServerFactory) -> None:
    """Loopback trusted no more (``none``, or a list without it): the header is ignored and loopback is one client
    address like any other, limited as such."""
    for trusted in ("none", "192.0.2.1"):
        server = await start_signaling(trusted_proxies=trusted, max_connections_per_ip=1)
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with connect(url, extra_headers=FORWARDED):
            assert await refused(url, [("X-Forwarded-For", "198.51.100.8")]) == 429
        assert rejections(server) == {"connections_per_ip": 1}


async def upgrade(port: int, source: str) -> tuple[int, asyncio.StreamWriter]:
    """A WebSocket handshake from ``source``: its HTTP status, and the connection (left open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    return int(head.split()[1]), writer


async def test_the_rest_of_127_0_0_0_8_is_an_ordinary_client(start_signaling: ServerFactory) -> None:
    """Only the addresses a proxy on this host connects from are trusted: 127.0.0.2 is limited like any client,
    which is what lets a benchmark play many clients from one machine (bench/abuse_attacks.py)."""
    server = await start_signaling()
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(BURST):
            status, writer = await upgrade(server.port, "127.0.0.2")
            writers.append(writer)
            assert status == 101
        status, writer = await upgrade(server.port, "127.0.0.2")
        writers.append(writer)
        assert status == 429
        assert rejections(server) == {"connection_rate_per_ip": 1}
    finally:
        for writer in writers:
            writer.close()

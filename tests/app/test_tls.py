"""TLS: wss:// and https:// from `signaling serve --certfile/--keyfile`, and certificates reloaded live.

Each test makes its own throwaway self-signed certificates (openssl) and runs the real server process. A
reload is observed from the outside: the certificate a fresh TLS handshake presents (its DER bytes).
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
from pathlib import Path

import pytest

from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from tests.helpers import ServerProcess, async_running_server
from tests.helpers.certs import CertPair, client_context, install, make_cert
from tests.helpers.wait import stays_true, wait_until

pytestmark = pytest.mark.timeout(60)

READY = '"listening"'


class Certs:
    def __init__(self, directory: Path) -> None:
        self.first = make_cert(directory / "made", "first.test", serial=1001)
        self.second = make_cert(directory / "made", "second.test", serial=2002)
        self.third = make_cert(directory / "made", "third.test", serial=3003)
        self.certfile = directory / "live" / "server.crt"
        self.keyfile = directory / "live" / "server.key"
        self.certfile.parent.mkdir()
        install(self.first, self.certfile, self.keyfile)
        self.trusting_all = client_context(self.first, self.second, self.third)

    def args(self, interval: float = 0.2) -> tuple[str, ...]:
        return (
            "--certfile",
            str(self.certfile),
            "--keyfile",
            str(self.keyfile),
            "--cert-check-interval",
            str(interval),
        )


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


async def presented_cert(port: int, ctx: ssl.SSLContext) -> bytes:
    """The DER certificate a new TLS connection to the server gets."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"), 5
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return bytes(der)
    finally:
        writer.close()


async def wait_for_cert(port: int, ctx: ssl.SSLContext, expected: CertPair) -> None:
    """Poll with new TLS handshakes until the server presents ``expected`` (at most 5 s).

    Polled: a reload announces nothing to a client; only a fresh handshake shows which certificate is loaded.
    """

    async def presents_expected() -> bool:
        return await presented_cert(port, ctx) == expected.der

    await wait_until(
        presents_expected, timeout=5, interval=0.05, message=f"the {expected.common_name} certificate never came"
    )


async def wait_for_log(srv: ServerProcess, needle: str, count: int = 1) -> None:
    """Poll the server's log until ``needle`` appears ``count`` times (at most 5 s).

    Polled: the log is a file another process writes; nothing tells us when a line lands.
    """
    await wait_until(
        lambda: srv.log_text().count(needle) >= count,
        timeout=5,
        interval=0.05,
        message=lambda: f"{needle} not logged {count} time(s)\n{srv.describe()}",
    )


def conn_cert(ws: ClientConnection) -> bytes:
    transport = ws._p.transport
    assert transport is not None
    der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert der is not None
    return bytes(der)


async def https_get(port: int, ctx: ssl.SSLContext, target: str) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"), 5
    )
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        async with asyncio.timeout(5):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


async def join(ws: ClientConnection, room: str = "tls") -> dict[str, object]:
    await ws.send(json.dumps({"type": "join", "room": room, "id": 7}))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome"
    assert welcome["ref"] == 7
    return welcome  # type: ignore[no-any-return]


async def ping_pong(ws: ClientConnection) -> None:
    """A signaling ping answered by pong (presence messages that arrive first are skipped)."""
    await ws.send('{"type":"ping"}')
    async with asyncio.timeout(5):
        while (msg := json.loads(await ws.recv()))["type"] != "pong":
            assert msg["type"] in ("peer-joined", "peer-left"), msg
    assert msg == {"type": "pong"}


def wss(srv: ServerProcess, path: str = "/ws") -> str:
    return f"wss://127.0.0.1:{srv.port}{path}"


async def test_wss_and_https(certs: Certs) -> None:
    ctx = client_context(certs.first)
    async with async_running_server(*certs.args(), ready_log=READY) as srv:
        assert '"url": "wss://' in srv.log_text()
        async with connect(wss(srv), ssl=ctx) as ws:
            welcome = await join(ws)
            assert welcome["room"] == "tls"
            assert conn_cert(ws) == certs.first.der
            await ping_pong(ws)
        head, body = await https_get(srv.port, ctx, "/healthz")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert json.loads(body)["status"] == "ok"
        head, _ = await https_get(srv.port, ctx, "/ws")
        assert head.startswith(b"HTTP/1.1 426 ")
        # The handshake is verified: a client that does not trust the certificate is refused.
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(wss(srv), ssl=client_context(certs.second))
        with pytest.raises(InvalidStatus) as info:
            await connect(wss(srv, "/elsewhere"), ssl=ctx)
        assert info.value.status == 404
        # Plain ws:// to the TLS port does not get a WebSocket.
        with pytest.raises((InvalidHandshake, ConnectionError, asyncio.IncompleteReadError, OSError)):
            await connect(f"ws://127.0.0.1:{srv.port}/ws", open_timeout=5)


async def test_certificate_swapped_on_disk_is_picked_up_and_old_connections_stay(certs: Certs) -> None:
    ctx = certs.trusting_all
    async with async_running_server(*certs.args(0.2), ready_log=READY) as srv:
        assert await presented_cert(srv.port, ctx) == certs.first.der
        async with connect(wss(srv), ssl=ctx) as before:
            await join(before)
            install(certs.second, certs.certfile, certs.keyfile)
            await wait_for_cert(srv.port, ctx, certs.second)
            # New connections get the new certificate ...
            async with connect(wss(srv), ssl=ctx) as after:
                assert conn_cert(after) == certs.second.der
                await join(after)
                # ... while the one opened before keeps its session, and both still work (same room).
                assert conn_cert(before) == certs.first.der
                await ping_pong(before)
                await after.send(json.dumps({"type": "message", "data": "across the reload"}))
                while (msg := json.loads(await asyncio.wait_for(before.recv(), 5)))["type"] != "message":
                    pass
                assert msg["data"] == "across the reload"
    assert '"tls_reloaded"' in srv.log_text()


async def test_sighup_reloads_at_once(certs: Certs) -> None:
    ctx = certs.trusting_all
    # A check interval of an hour: only the signal can explain a reload within the test.
    async with async_running_server(*certs.args(3600), ready_log=READY) as srv:
        async with connect(wss(srv), ssl=ctx) as before:
            await join(before)
            install(certs.second, certs.certfile, certs.keyfile)
            assert await presented_cert(srv.port, ctx) == certs.first.der
            srv.proc.send_signal(signal.SIGHUP)
            await wait_for_cert(srv.port, ctx, certs.second)
            await ping_pong(before)
        assert srv.is_running


async def test_broken_files_are_refused_and_the_old_certificate_stays(certs: Certs) -> None:
    ctx = certs.trusting_all
    async with async_running_server(*certs.args(0.1), ready_log=READY) as srv:
        async with connect(wss(srv), ssl=ctx) as ws:
            await join(ws)
            certs.certfile.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
            await wait_for_log(srv, '"tls_reload_failed"')
            assert await presented_cert(srv.port, ctx) == certs.first.der
            await ping_pong(ws)
            # A certificate with somebody else's key is refused too.
            certs.certfile.write_bytes(certs.third.certfile.read_bytes())
            await wait_for_log(srv, '"tls_reload_failed"', 2)
            assert await presented_cert(srv.port, ctx) == certs.first.der
            # SIGHUP with broken files: refused as well, and the process keeps serving.
            srv.proc.send_signal(signal.SIGHUP)
            await wait_for_log(srv, '"tls_reload_failed"', 3)
            assert await presented_cert(srv.port, ctx) == certs.first.der
            # Files that stay broken are not retried (nor logged) again at every check: 0.35 s is 3 checks.
            await stays_true(
                lambda: srv.log_text().count('"tls_reload_failed"') == 3,
                for_seconds=0.35,
                interval=0.05,
                message=lambda: f"unchanged broken files were reloaded again\n{srv.describe()}",
            )
            # A good pair afterwards is loaded.
            install(certs.second, certs.certfile, certs.keyfile)
            await wait_for_cert(srv.port, ctx, certs.second)
            await ping_pong(ws)
        assert srv.is_running


async def test_oversize_message_over_wss_gets_its_1009(certs: Certs) -> None:
    """TLS cannot half-close: the close frame must still arrive before the connection ends (not a reset)."""
    ctx = client_context(certs.first)
    async with async_running_server(*certs.args(), "--max-message-size", "1024", ready_log=READY) as srv:
        for size in (1025, 1 << 20):
            async with connect(wss(srv), ssl=ctx, max_message_size=None) as ws:
                await ws.send("x" * size)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 5)
                assert info.value.code == 1009, size


async def test_missing_files_at_start_fail_clearly(tmp_path: Path) -> None:
    from tests.helpers import ServerProcessError

    with pytest.raises(ServerProcessError) as info:
        async with async_running_server(
            "--certfile", str(tmp_path / "none.crt"), "--keyfile", str(tmp_path / "none.key"), ready_timeout=10
        ):
            pass
    assert "exited with" in str(info.value)

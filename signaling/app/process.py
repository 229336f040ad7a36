"""Runs the server process: builds the transport from Settings, picks the application, handles signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl

import structlog

from signaling.ws.aio.loop import loop_name
from signaling.ws.aio.loop import run as run_loop
from signaling.ws.aio.server import App, ServerConfig, WebSocketServer

from .echo import EchoApp
from .settings import Settings
from .tls import CertReloader

__all__ = ["build_server", "run", "serve"]

log = structlog.get_logger("signaling.server")


def transport_config(settings: Settings, ssl_context: ssl.SSLContext | None = None) -> ServerConfig:
    return ServerConfig(
        host=settings.host,
        port=settings.port,
        max_message_size=settings.max_message_size,
        handshake_timeout=settings.handshake_timeout,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        idle_timeout=settings.idle_timeout,
        close_timeout=settings.close_timeout,
        max_connections=settings.max_connections,
        write_buffer_high=settings.write_buffer_high,
        write_buffer_low=settings.write_buffer_low,
        write_buffer_limit=settings.write_buffer_limit,
        ssl=ssl_context,
    )


def build_app(settings: Settings) -> App:
    if settings.echo:
        return EchoApp()
    from .wiring import SignalingApp

    return SignalingApp(settings)


def build_server(settings: Settings, ssl_context: ssl.SSLContext | None = None) -> WebSocketServer:
    return WebSocketServer(build_app(settings), transport_config(settings, ssl_context))


async def _watch_certificates(reloader: CertReloader, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        reloader.maybe_reload()


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation), then close every connection with 1001 and return."""
    reloader = None
    if settings.certfile is not None and settings.keyfile is not None:
        reloader = CertReloader(settings.certfile, settings.keyfile)
    server = build_server(settings, reloader.context if reloader else None)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Handlers first: a signal that arrives once the port is open must already mean a graceful stop (or reload).
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    if reloader is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    await server.start()
    watcher = None
    if reloader is not None:
        watcher = asyncio.create_task(_watch_certificates(reloader, settings.cert_check_interval))
    scheme = "wss" if settings.certfile else "ws"
    log.info(
        "listening",
        url=f"{scheme}://{settings.host}:{server.port}{'' if settings.echo else settings.path}",
        app="echo" if settings.echo else "signaling",
        loop=loop_name(loop),
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        log.info("shutting_down", connections=len(server.connections))
        await server.close()
        log.info("stopped")


def run(settings: Settings) -> None:
    run_loop(serve(settings), prefer_uvloop=settings.uvloop)

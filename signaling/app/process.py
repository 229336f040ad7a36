"""Runs the server process: builds the transport from Settings, picks the application, handles signals."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import ssl

import structlog

from signaling.cluster.node import longest_stop
from signaling.ws.aio.loop import loop_name
from signaling.ws.aio.loop import run as run_loop
from signaling.ws.aio.server import ServerConfig, WebSocketServer

from .addresses import parse_networks
from .echo import EchoApp
from .settings import Settings
from .tls import CertReloader
from .wiring import STEPS_TIMEOUT, WEBHOOK_FLUSH, SignalingApp

__all__ = ["build_server", "longest_drain", "run", "serve"]

log = structlog.get_logger("signaling.server")


#: File descriptors kept for everything but client sockets: the listening socket, logs, TLS files, Redis...
FD_RESERVE = 64


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE toward ``wanted`` (up to the hard limit); return the soft limit now in force.

    With the common soft limit of 1024, connections past ~1,010 would fail at accept() with nothing said to
    the client: the server must know its real budget and refuse cleanly (503) before reaching it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def transport_config(
    settings: Settings, ssl_context: ssl.SSLContext | None = None, *, open_files: int | None = None
) -> ServerConfig:
    """The transport's settings; ``open_files`` (the process's descriptor budget) caps the sockets it takes."""
    max_sockets = 0
    max_connections = settings.max_connections
    if open_files is not None:
        max_sockets = max(16, open_files - FD_RESERVE)
        if not max_connections or max_connections > max_sockets:
            log.warning(
                "open_file_limit",
                limit=open_files,
                max_connections=settings.max_connections,
                effective=max_sockets,
                hint="raise the hard limit (ulimit -n, LimitNOFILE=, docker --ulimit nofile=) to serve more",
            )
            max_connections = max_sockets
    return ServerConfig(
        host=settings.host,
        port=settings.port,
        max_message_size=settings.max_message_size,
        max_fragments=settings.max_fragments,
        handshake_timeout=settings.handshake_timeout,
        message_timeout=settings.message_timeout,
        frame_rate=settings.frame_rate,
        frame_burst=settings.frame_burst,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        idle_timeout=settings.idle_timeout,
        close_timeout=settings.close_timeout,
        max_connections=max_connections,
        max_sockets=max_sockets,
        max_handshakes_per_ip=settings.max_handshakes_per_ip,
        exempt_networks=parse_networks(settings.trusted_proxies),
        write_buffer_high=settings.write_buffer_high,
        write_buffer_low=settings.write_buffer_low,
        write_buffer_limit=settings.write_buffer_limit,
        slow_consumer_timeout=settings.slow_consumer_timeout,
        ssl=ssl_context,
    )


def longest_drain(settings: Settings) -> float:
    """About the longest a drain (SIGTERM) takes: the close handshakes, the session steps still running, leaving the
    cluster. The grace period before SIGKILL must cover it (Kubernetes' terminationGracePeriodSeconds, with the
    preStop pause: deploy/kubernetes/deployment.yaml; compose's stop_grace_period)."""
    seconds = transport_config(settings).close_wait + STEPS_TIMEOUT
    if settings.webhook_urls and settings.redis_url is None:
        seconds += WEBHOOK_FLUSH
    return seconds + (longest_stop() if settings.redis_url is not None else 0.0)


def build_server(
    settings: Settings, ssl_context: ssl.SSLContext | None = None, *, open_files: int | None = None
) -> WebSocketServer:
    config = transport_config(settings, ssl_context, open_files=open_files)
    if settings.echo:
        return WebSocketServer(EchoApp(), config)
    app = SignalingApp(settings)
    server = WebSocketServer(app, config)
    app.use_transport(server)
    return server


async def _watch_certificates(reloader: CertReloader, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        reloader.maybe_reload()


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation), then drain (close every connection with 1001) and return."""
    reloader = None
    if settings.certfile is not None and settings.keyfile is not None:
        reloader = CertReloader(settings.certfile, settings.keyfile)
    open_files = raise_open_file_limit(settings.max_connections + FD_RESERVE + settings.max_handshakes_per_ip)
    server = build_server(settings, reloader.context if reloader else None, open_files=open_files)
    app = server.app if isinstance(server.app, SignalingApp) else None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Handlers first: a signal that arrives once the port is open must already mean a graceful stop (or reload).
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    if reloader is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    if app is not None:
        await app.start()
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
    if app is not None:
        app.ready = True
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        log.info("shutting_down", connections=len(server.connections))
        if app is not None:
            await app.shutdown(server)  # /readyz turns 503 at once, so a balancer stops sending new clients
        await server.close()
        log.info("stopped")


def run(settings: Settings) -> None:
    run_loop(serve(settings), prefer_uvloop=settings.uvloop)

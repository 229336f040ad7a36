"""Echo servers for the loopback benchmarks: ours and three baselines, selectable by name and event loop.

Run: python -m bench.servers --lib {ours,websockets,picows,picows-noafn,aiohttp} --loop {asyncio,uvloop}
     [--port P] [--host 127.0.0.1] [--max-seconds S]

Every server echoes a text message as text and a binary message as binary, after decoding text to ``str``
(the fairness rule of ../shared/perf-anchors.md: picows does ``get_payload_as_utf8_text().encode()``).
Compression is off everywhere. Each library otherwise keeps its own defaults (websockets and ours ping every
20 s; picows and aiohttp do not ping), because those are what an operator gets.

- ``ours``: ``signaling.ws.aio.server.WebSocketServer`` with ``signaling.echo.EchoApp`` and the production
  transport defaults, except ``max_connections=0`` so that the 10,000-connection idle test is not refused.
- ``picows`` uses its default C transport (aiofastnet when installed); ``picows-noafn`` the loop's stock
  transports, as a hand-written ``asyncio.Protocol`` does.

``--port 0`` binds a free port. Once listening, the server prints ``READY <pid> <port>`` on stdout (flushed).
It stops on SIGTERM/SIGINT, or by itself after ``--max-seconds`` (600 by default), so no run outlives its bench.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import IO, Any

from bench import common
from bench.procstat import pinned, started

LIBS = ("ours", "websockets", "picows", "picows-noafn", "aiohttp")

#: An async factory that starts listening and returns (bound port, async closer).
Starter = Callable[[str, int], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]


def raise_nofile_limit(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``want`` (bounded by the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


async def start_ours(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    from signaling.app.echo import EchoApp
    from signaling.logs import configure_logging
    from signaling.ws.aio.server import ServerConfig, WebSocketServer

    # Production logging at warning level, to stderr: the hot path logs nothing, but no stray line can block.
    configure_logging("warning", "json", stream=sys.stderr)
    # As the baselines: no policy limits, but the frame budget is still checked (at a rate never reached).
    config = ServerConfig(
        host=host, port=port, max_connections=0, max_handshakes_per_ip=0, frame_rate=1e9, frame_burst=1e9
    )
    server = WebSocketServer(EchoApp(), config)
    await server.start()

    async def close() -> None:
        await server.close()

    return server.port, close


async def start_websockets(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:  # str for text frames (decoded), bytes for binary
            await ws.send(message)

    server = await serve(echo, host, port, compression=None)
    bound = int(next(iter(server.sockets)).getsockname()[1])

    async def close() -> None:
        server.close()
        await server.wait_closed()

    return bound, close


async def _start_picows(host: str, port: int, use_aiofastnet: bool | None) -> tuple[int, Callable[[], Awaitable[None]]]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

    class EchoListener(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type == WSMsgType.TEXT:
                transport.send(WSMsgType.TEXT, frame.get_payload_as_utf8_text().encode())
            elif msg_type == WSMsgType.BINARY:
                transport.send(WSMsgType.BINARY, frame.get_payload_as_bytes())
            else:
                common.answer_close(transport, frame)

    def factory(request: WSUpgradeRequest) -> WSListener:
        return EchoListener()

    server = await ws_create_server(factory, host, port, use_aiofastnet=use_aiofastnet)
    bound = int(server.sockets[0].getsockname()[1])

    async def close() -> None:
        server.close()

    return bound, close


async def start_picows(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    return await _start_picows(host, port, None)


async def start_picows_noafn(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    return await _start_picows(host, port, False)


async def start_aiohttp(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server  # the asyncio.Server; aiohttp has no public accessor for the bound port
    bound = int(server.sockets[0].getsockname()[1])

    async def close() -> None:
        await runner.cleanup()

    return bound, close


STARTERS: dict[str, Starter] = {
    "ours": start_ours,
    "websockets": start_websockets,
    "picows": start_picows,
    "picows-noafn": start_picows_noafn,
    "aiohttp": start_aiohttp,
}


async def serve(lib: str, host: str, port: int, max_seconds: float) -> None:
    bound, close = await STARTERS[lib](host, port)
    await common.serve_until_stopped(bound, close, max_seconds)


@contextlib.contextmanager
def spawn_server(
    lib: str, loop: str, *, cpu: int | None = 0, max_seconds: float = 600.0, extra: tuple[str, ...] = ()
) -> Iterator[tuple[int, int]]:
    """Start ``python -m bench.servers`` (pinned to ``cpu`` with taskset) and yield (pid, port) once it listens.

    The server's stdout and stderr go to a temporary file (a full pipe could block it); it is stopped with
    SIGTERM, then SIGKILL after 5 s, on leaving the block.
    """
    cmd = [sys.executable, "-m", "bench.servers", "--lib", lib, "--loop", loop, "--port", "0"]
    cmd += ["--max-seconds", str(max_seconds), *extra]

    def ready(pid: int, out: IO[str]) -> int | None:
        out.seek(0)
        for line in out.read().splitlines():
            if line.startswith("READY "):
                _, ready_pid, port = line.split()
                assert int(ready_pid) == pid  # taskset execs the interpreter in place
                return int(port)
        return None

    with started(pinned(cmd, cpu), f"{lib}:{loop} server", ready) as (pid, port):
        yield pid, port


def main() -> None:
    args = common.server_parser(__doc__, LIBS, port_required=False).parse_args()
    raise_nofile_limit()
    common.run_server(serve(args.lib, args.host, args.port, args.max_seconds), args.loop)


if __name__ == "__main__":
    main()

"""Loopback helpers of the asyncio adapter's tests: a raw-socket client, frames read off a stream, and the server's
side of a connection.

Frames go out through ``encode_frame`` and come in through ``tests/ws/helpers.py``'s ``parse_frame`` (so
``decode_header``), like everywhere else in the tests.
"""

from __future__ import annotations

import asyncio
import socket

from signaling.ws.aio.server import ServerConnection, WebSocketServer
from signaling.ws.frames import Opcode, decode_header, encode_frame
from tests.helpers.wait import wait_until
from tests.ws.helpers import RawFrame, parse_frame, request_head

__all__ = ["RawClient", "held_connections", "read_all", "read_frame", "server_side"]


async def read_frame(reader: asyncio.StreamReader) -> RawFrame:
    """The next whole frame on ``reader``: its header read as far as ``decode_header`` needs, then its payload."""
    data = await reader.readexactly(2)
    while (header := decode_header(data)) is None:
        data += await reader.readexactly(1)  # the extended length and the masking key: 12 bytes at most
    data += await reader.readexactly(header[1])
    parsed = parse_frame(data)
    assert parsed is not None
    return parsed[0]


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection (at most 5 s)."""
    async with asyncio.timeout(5):
        return await reader.read()


class RawClient:
    """A WebSocket client made of a bare asyncio stream: it does only what the test tells it to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, *, target: str = "/ws", upgrade: bool = True, rcvbuf: int | None = None
    ) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        client = cls(reader, writer)
        if upgrade:
            head = await client.handshake(port, target)
            assert head.startswith(b"HTTP/1.1 101 "), head
        return client

    @property
    def sockname(self) -> tuple[str, int]:
        name = self.writer.get_extra_info("sockname")
        return (name[0], name[1])

    def send_request(self, port: int, target: str = "/ws") -> None:
        """The RFC 6455 1.3 sample request (its key, so the accept value is RFC_ACCEPT), to 127.0.0.1:port."""
        self.writer.write(request_head(target=target, host=f"127.0.0.1:{port}"))

    async def handshake(self, port: int, target: str = "/ws") -> bytes:
        """Send the sample request; return the response head."""
        self.send_request(port, target)
        async with asyncio.timeout(5):
            return await self.reader.readuntil(b"\r\n\r\n")

    def send(self, opcode: int, payload: bytes = b"", *, fin: bool = True) -> None:
        self.writer.write(encode_frame(opcode, payload, fin=fin, mask=True))

    def send_text(self, text: str) -> None:
        self.send(Opcode.TEXT, text.encode())

    async def read_frame(self) -> RawFrame:
        frame = await read_frame(self.reader)
        assert not frame.masked, "server frames are never masked"
        return frame

    async def read_data(self) -> bytes:
        """The next data frame's payload, skipping control frames before it."""
        while True:
            frame = await self.read_frame()
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                return frame.payload
            assert frame.opcode in (Opcode.PING, Opcode.PONG), frame

    async def read_until_close(self) -> tuple[RawFrame, int]:
        """Skip everything up to the close frame; returns it and how many data frames came before it."""
        data_frames = 0
        while True:
            frame = await self.read_frame()
            if frame.opcode == Opcode.CLOSE:
                return frame, data_frames
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                data_frames += 1

    async def at_eof(self) -> bool:
        """True once the server has closed TCP (read returns b"" or the connection was reset)."""
        try:
            return await self.reader.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.transport.abort()


async def server_side(server: WebSocketServer, client_sockname: tuple[str, int]) -> ServerConnection:
    """The server's ServerConnection for the client whose local address is ``client_sockname``.

    Polled: the server's connection table announces nothing when an accepted connection is added.
    """

    def find() -> ServerConnection | None:
        for c in server.connections:
            if c.remote is not None and tuple(c.remote[:2]) == client_sockname:
                return c
        return None

    await wait_until(
        lambda: find() is not None, timeout=5, interval=0.005, message=f"no server connection for {client_sockname}"
    )
    found = find()
    assert found is not None
    return found


def held_connections(server: WebSocketServer) -> str:
    """For failure messages of polls on the server's connection table."""
    return f"the server still holds {len(server.connections)} connection(s)"

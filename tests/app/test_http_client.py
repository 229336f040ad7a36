"""The webhooks' HTTP client (signaling/app/http_client.py) against small loopback servers that answer in the
ways real ones do: kept-alive, chunked, closing, closing an idle connection, never answering."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from signaling.app.http_client import HttpPoster, PostFailed

Answer = Callable[[int], bytes | None]  # the n-th request on a connection -> raw response (None: say nothing)


class Server:
    def __init__(self, answer: Answer, close_first: bool = False) -> None:
        self.answer = answer
        #: Close the first connection after its first answer, as a server closes an idle kept-alive one.
        self.close_first = close_first
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            n = 0
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                response = self.answer(n)
                n += 1
                if response is None:
                    await asyncio.Event().wait()  # a server that never answers
                    continue
                writer.write(response)
                await writer.drain()
                if b"close" in response.lower() or (self.close_first and self.connections == 1):
                    break
        writer.close()


@contextlib.asynccontextmanager
async def serving(answer: Answer, close_first: bool = False) -> AsyncIterator[Server]:
    server = Server(answer, close_first)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def url(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}/hook?x=1"


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\nok\r\n0\r\nTrailer: x\r\n\r\n"
LENGTH = b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nthank"
CLOSING = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(("response", "connections"), [(CHUNKED, 1), (LENGTH, 1), (CLOSING, 3)])
async def test_a_connection_is_kept_unless_the_answer_says_otherwise(response: bytes, connections: int) -> None:
    async with serving(lambda _: response) as server:
        poster = HttpPoster(url(server), timeout=5)
        statuses = [await poster.post(b'{"n":%d}' % i, [("webhook-id", f"msg_{i}")]) for i in range(3)]
        await poster.close()
    assert statuses == [int(response.split()[1])] * 3
    assert server.connections == connections
    first = server.requests[0]
    assert first.startswith(b"POST /hook?x=1 HTTP/1.1\r\n") and b"\r\nwebhook-id: msg_0\r\n" in first
    assert b"\r\nContent-Type: application/json\r\n" in first and first.endswith(b'{"n":0}')


async def test_a_connection_the_receiver_closed_while_idle_is_replaced_without_sending_twice() -> None:
    async with serving(lambda _: LENGTH, close_first=True) as server:
        poster = HttpPoster(url(server), timeout=5)
        assert await poster.post(b"{}", []) == 202
        assert await poster.post(b"{}", []) == 202  # the closed connection gave nothing back: sent on a new one
        await poster.close()
    assert server.connections == 2 and len(server.requests) == 2


async def test_no_answer_within_the_timeout_is_a_failure() -> None:
    async with serving(lambda _: None) as server:
        poster = HttpPoster(url(server), timeout=0.3)
        with pytest.raises(PostFailed, match="TimeoutError"):
            await poster.post(b"{}", [])
        await poster.close()


async def test_a_refused_connection_and_a_garbage_answer_are_failures() -> None:
    async with serving(lambda _: b"SMTP ready\r\n\r\n") as server:
        poster = HttpPoster(url(server), timeout=2)
        with pytest.raises(PostFailed, match="malformed"):
            await poster.post(b"{}", [])
        port = server.port
    poster = HttpPoster(f"http://127.0.0.1:{port}/", timeout=2)
    with pytest.raises(PostFailed, match="Connect"):
        await poster.post(b"{}", [])


@pytest.mark.parametrize("bad", ["ftp://example.com/x", "http:///nohost", "example.com/x"])
def test_only_http_and_https_urls_with_a_host(bad: str) -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        HttpPoster(bad)

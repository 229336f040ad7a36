"""A small HTTP/1.1 client for POSTing webhooks: one URL, a few kept-alive connections, hard time limits.

The webhook sender needs one thing, a POST and its status, for receivers that are ordinary web servers
(http:// or https://). The head is parsed by the transport's sans-I/O HTTP module; the body is read (within a
bound) only so the connection can be used again. No client library: the server has no other use for one.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Final
from urllib.parse import urlsplit

from signaling import __version__
from signaling.ws.exceptions import HandshakeError
from signaling.ws.http11 import DEFAULT_MAX_HEAD, Headers, parse_response_head

__all__ = ["HttpPoster", "PostFailed"]

#: Response bodies read at most (a receiver's "ok" is a few bytes); past it the connection is not reused.
MAX_RESPONSE_BODY: Final = 64 * 1024
#: Connections kept open to one receiver at most.
MAX_CONNECTIONS: Final = 8

_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class PostFailed(Exception):
    """The POST got no HTTP answer: connection refused or reset, a timeout, a malformed response. ``stale``: a
    kept connection was closed before any answer began (the receiver closed it while idle): try a new one."""

    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale


class HttpPoster:
    """POSTs to one URL (``http://`` or ``https://``), reusing up to ``MAX_CONNECTIONS`` connections."""

    def __init__(self, url: str, *, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a webhook URL must be http:// or https:// with a host, not {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if parts.port is None else f"{host}:{parts.port}"
        self.timeout = timeout
        self._idle: list[_Stream] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def post(self, body: bytes, headers: list[tuple[str, str]]) -> int:
        """POST ``body`` (JSON) with ``headers``; the response's status.

        Raises:
            PostFailed: no HTTP answer within the timeout.
        """
        async with self._slots:
            while self._idle:  # a kept connection the receiver may have closed meanwhile
                try:
                    return await self._exchange(self._idle.pop(), body, headers)
                except PostFailed as exc:
                    if not exc.stale:
                        raise
            return await self._exchange(None, body, headers)

    async def _exchange(self, stream: _Stream | None, body: bytes, headers: list[tuple[str, str]]) -> int:
        reused = stream is not None
        try:
            async with asyncio.timeout(self.timeout):
                if stream is None:
                    stream = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
                reader, writer = stream
                writer.write(self._request(body, headers))
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > DEFAULT_MAX_HEAD:
                    raise PostFailed("response head too large")
                response = parse_response_head(head[:-4])
                reusable = await self._skip_body(reader, response.status, response.headers)
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            if stream is not None:
                stream[1].close()
            closed = isinstance(exc, ConnectionResetError | BrokenPipeError) or (
                isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
            )
            stale = reused and closed
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise PostFailed(text, stale=stale) from None
        except (HandshakeError, ValueError) as exc:
            if stream is not None:
                stream[1].close()
            raise PostFailed(f"malformed response: {exc}") from None
        if reusable and "close" not in response.headers.tokens("Connection"):
            self._idle.append(stream)
        else:
            writer.close()
        return response.status

    def _request(self, body: bytes, headers: list[tuple[str, str]]) -> bytes:
        lines = [
            f"POST {self.target} HTTP/1.1",
            f"Host: {self.authority}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"User-Agent: signaling/{__version__}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _skip_body(self, reader: asyncio.StreamReader, status: int, headers: Headers) -> bool:
        """Read the response's body past; whether the connection can carry the next request."""
        if status < 200 or status in (204, 304):
            return True
        if "chunked" in headers.tokens("Transfer-Encoding"):
            total = 0
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
                total += size
                if total > MAX_RESPONSE_BODY:
                    return False
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    return True
                await reader.readexactly(size + 2)
        length = headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_RESPONSE_BODY:
            return False  # read until close, or too much: do not reuse
        await reader.readexactly(int(length))
        return True

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

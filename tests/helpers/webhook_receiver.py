"""A webhook receiver for the tests: a small HTTP/1.1 server on loopback that checks every POST with the
``standardwebhooks`` library (never the server's own code) and records what it got.

``answer`` decides each reply's status (200 unless told otherwise: 503 while "down", say). Every try is kept in
``tries`` (id, the time it came, the status answered); the events it accepted with a 2xx in ``accepted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.helpers.wait import wait_until

__all__ = ["Receiver", "Try", "receiving"]


@dataclass(frozen=True, slots=True)
class Try:
    id: str
    at: float
    status: int
    event: dict[str, Any]


@dataclass
class Receiver:
    secret: str
    port: int = 0
    answer: Callable[[Try], int] = lambda _: 200
    tries: list[Try] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    accepted_ids: list[str] = field(default_factory=list)
    #: Requests whose signature the library refused (should stay empty).
    forged: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks?from=signaling"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        webhook = Webhook(self.secret)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                assert lines[0].startswith("POST /hooks?from=signaling HTTP/1.1"), lines[0]
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers["content-length"]))
                try:
                    event = webhook.verify(body, headers)
                except Exception as exc:  # the library's WebhookVerificationError, or a malformed body
                    self.forged.append(f"{exc!r}: {headers}")
                    status = 400
                else:
                    tried = Try(headers["webhook-id"], time.monotonic(), 0, event)
                    status = self.answer(tried)
                    self.tries.append(Try(tried.id, tried.at, status, event))
                    if 200 <= status < 300:
                        self.accepted.append(event)
                        self.accepted_ids.append(tried.id)
                content = b"" if status in (204, 304) else b"ok"  # RFC 9110: a 204 has no content
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(content)}\r\n\r\n".encode() + content)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the sender closed, or the test is over
        finally:
            writer.close()

    async def until(self, count: int, within: float = 20.0) -> list[dict[str, Any]]:
        """The first ``count`` accepted events, once they came (within ``within`` seconds)."""
        await wait_until(lambda: len(self.accepted) >= count, timeout=within, message=self.describe)
        return self.accepted[:count]

    def describe(self) -> str:
        return "accepted so far: " + json.dumps([(e["type"], e["data"].get("seq")) for e in self.accepted])


@contextlib.asynccontextmanager
async def receiving(secret: str) -> AsyncIterator[Receiver]:
    receiver = Receiver(secret)
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver

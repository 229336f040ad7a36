"""What the container tests ask of a running server from outside: its JSON over HTTP, through a published port."""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["answers", "http_json"]

STEP = 10.0


async def http_json(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, Any]:
    """``GET path`` on ``host:port``: the status and the parsed body."""
    async with asyncio.timeout(STEP):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            raw = await reader.read()
        finally:
            writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def answers(port: int, path: str) -> bool:
    """Whether ``GET path`` gets a 200 there yet (False while nothing, or not yet the server, answers)."""
    try:
        status, _ = await http_json(port, path)
    except (OSError, IndexError, ValueError, TimeoutError):
        return False  # refused, or docker-proxy accepted and the container closed: not up yet
    return status == 200

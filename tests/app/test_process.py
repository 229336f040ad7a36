"""The server process and its operating system: the open-file limit a connection count needs."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from signaling.ws.aio.client import connect
from signaling.ws.exceptions import InvalidStatus
from tests.helpers.server_process import async_running_process, signaling_argv

pytestmark = pytest.mark.timeout(60)


async def test_below_the_open_file_limit_a_full_server_refuses_with_503() -> None:
    """With a soft and hard limit of 128 descriptors the server cannot keep its 10,000-connection promise: it says
    so at start and refuses the extra clients with 503, instead of dropping them silently at accept()."""
    argv = [
        "prlimit",
        "--nofile=128:128",
        *signaling_argv("serve", "--connection-rate-per-ip", "0", "--max-connections-per-ip", "0"),
    ]
    async with async_running_process(argv, name="serve-128-files", env_drop_prefixes=("SIGNALING_",)) as server:
        assert '"event": "open_file_limit"' in server.log_text() or "open_file_limit" in server.log_text()
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with contextlib.AsyncExitStack() as stack:
            accepted = 0
            refused = 0
            for _ in range(80):
                try:
                    await stack.enter_async_context(connect(url, open_timeout=5))
                    accepted += 1
                except InvalidStatus as exc:
                    assert exc.status == 503
                    refused += 1
            assert accepted == 128 - 64 and refused == 80 - accepted
        # Once they are gone, everyone is served again.
        async with connect(url, open_timeout=5) as ws:
            await ws.send('{"type":"ping"}')
            assert await asyncio.wait_for(ws.recv(), 5) == '{"type":"pong"}'

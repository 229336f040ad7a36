"""Logs of a real server process: JSON lines off a terminal, bound to connection, peer and room, no SDP."""

from __future__ import annotations

import json
import secrets

import pytest
import structlog

from signaling.client import SignalingClient
from signaling.logs import configure_logging
from tests.helpers import async_running_server

pytestmark = pytest.mark.timeout(60)

SDP = f"v=0\r\no=- {secrets.randbelow(10**12)} 2 IN IP4 192.0.2.77\r\ns=-\r\nc=IN IP4 192.0.2.77\r\n"
CANDIDATE = "candidate:1 1 udp 2122260223 192.0.2.77 51234 typ host"


async def test_server_logs_are_json_lines_bound_to_conn_peer_room_without_sdp() -> None:
    async with async_running_server("--log-level", "info") as srv:
        url = f"ws://127.0.0.1:{srv.port}/ws"
        async with SignalingClient.connect(url) as alice, SignalingClient.connect(url) as bob:
            a = await alice.join("logroom", name="alice")
            b = await bob.join("logroom", name="bob")
            await alice.send_offer(b.peer, SDP)
            await alice.send_candidate(b.peer, {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0})
            await bob.ping()  # the relays before it were handled: the server answers in order
            await alice.send_offer("nobody", SDP)  # an error, logged at info
            await alice.ping()
        log_text = srv.log_text()
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    assert lines, log_text
    events = {line["event"] for line in lines}
    assert {"listening", "connected", "joined", "client error", "left", "disconnected"} <= events, events
    for line in lines:
        assert {"event", "level", "timestamp"} <= line.keys()
    joined = [line for line in lines if line["event"] == "joined"]
    assert {(j["peer"], j["room"]) for j in joined} == {(a.peer, "logroom"), (b.peer, "logroom")}
    assert all(isinstance(j["conn"], int) for j in joined)
    error = next(line for line in lines if line["event"] == "client error")
    assert error["peer"] == a.peer and error["room"] == "logroom" and error["code"] == "unknown-peer"
    # SDP and candidates carry IP addresses: never at info.
    assert "192.0.2.77" not in log_text
    assert "v=0" not in log_text


def test_console_format_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    class Tty:
        def __init__(self) -> None:
            self.parts: list[str] = []

        def isatty(self) -> bool:
            return True

        def write(self, s: str) -> int:
            self.parts.append(s)
            return len(s)

        def flush(self) -> None:
            pass

    out = Tty()
    configure_logging("info", "auto", stream=out)
    try:
        structlog.get_logger("t").info("hello", peer="p1")
        text = "".join(out.parts)
        assert "hello" in text and "peer=p1" in text
        assert not text.lstrip().startswith("{")
    finally:
        configure_logging("info", "json")

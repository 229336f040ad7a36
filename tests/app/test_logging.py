"""Logs of a real server process: JSON lines off a terminal, bound to connection, peer and room, no SDP."""

from __future__ import annotations

import io
import json
import secrets

import pytest
import structlog

from signaling.clients.signaling_client import SignalingClient
from signaling.logs import processors
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
    log_text = srv.log_text()  # after SIGTERM: the disconnects are logged by then
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    assert lines, log_text
    events = {line["event"] for line in lines}
    assert {"listening", "connected", "joined", "client error", "left", "disconnected"} <= events, events
    for line in lines:
        assert {"event", "level", "timestamp"} <= line.keys()
    joined = [line for line in lines if line["event"] == "joined"]
    assert {(j["peer"], j["room"]) for j in joined} == {(a.peer, "logroom"), (b.peer, "logroom")}
    assert all(isinstance(j["conn"], int) for j in joined)
    about_connections = [line for line in lines if "conn" in line and line["event"] != "close_received"]
    assert about_connections and all(line["client"] == "127.0.0.1" for line in about_connections)
    error = next(line for line in lines if line["event"] == "client error")
    assert error["peer"] == a.peer and error["room"] == "logroom" and error["code"] == "unknown-peer"
    # SDP and candidates carry IP addresses: never at info.
    assert "192.0.2.77" not in log_text
    assert "v=0" not in log_text


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "pipe"])
def test_auto_format_follows_the_terminal(tty: bool) -> None:
    out = _Stream(tty)
    log = structlog.wrap_logger(structlog.PrintLogger(file=out), processors=processors("auto", out))
    log.info("hello", peer="p1")
    text = out.getvalue()
    if tty:
        assert "hello" in text and "peer=p1" in text and not text.startswith("{")
    else:
        assert json.loads(text) | {"timestamp": None} == {
            "event": "hello",
            "peer": "p1",
            "level": "info",
            "timestamp": None,
        }

"""The server's opening handshake (RFC 6455 4.2) through the sans-I/O Connection: bytes in, events and bytes out.

The client's side (4.1) is in test_handshake_client.py.
"""

from __future__ import annotations

import base64

import pytest

from signaling.ws.connection import Connection, Side, State
from signaling.ws.events import BadRequest, PingReceived, RequestReceived, TextMessage
from signaling.ws.exceptions import HandshakeError, InvalidState
from signaling.ws.frames import Opcode, encode_frame
from signaling.ws.handshake import ClientHandshake, accept_key, is_upgrade_request
from signaling.ws.http11 import Headers, Response

from .helpers import RFC_ACCEPT, RFC_KEY, feed, flags, receive_request, request_head

RESPONSE_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


def test_accept_key_rfc_sample() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def b64(n: int) -> str:
    return base64.b64encode(bytes(range(n))).decode()


class TestServerAccepts:
    @pytest.mark.parametrize("step", [None, 1, 7], ids=["whole", "bytewise", "7-byte-chunks"])
    def test_rfc_sample_exact_101(self, step: int | None) -> None:
        conn = Connection(Side.SERVER)
        event = receive_request(conn, request_head(), step)
        assert conn.data_to_send() == b""  # nothing is sent before the owner decides
        assert flags(conn) == (State.CONNECTING, False, False)
        assert event.request.path == "/chat"
        assert is_upgrade_request(event.request)
        response = conn.accept(event.request)
        out = conn.data_to_send()
        assert out == RESPONSE_101
        assert out.endswith(b"\r\n\r\n")
        assert response.serialize() == out
        assert flags(conn) == (State.OPEN, False, False)
        assert conn.subprotocol is None

    def test_request_event_only_on_last_byte(self) -> None:
        conn = Connection(Side.SERVER)
        head = request_head()
        for i in range(len(head) - 1):
            assert conn.receive_data(head[i : i + 1]) == []
        assert isinstance(conn.receive_data(head[-1:])[0], RequestReceived)

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param(
                [
                    ("host", "a"),
                    ("upgrade", "websocket"),
                    ("connection", "Upgrade"),
                    ("sec-websocket-key", RFC_KEY),
                    ("sec-websocket-version", "13"),
                ],
                id="lowercase-names",
            ),
            pytest.param(
                [
                    ("HOST", "a"),
                    ("UPGRADE", "websocket"),
                    ("CONNECTION", "Upgrade"),
                    ("SEC-WEBSOCKET-KEY", RFC_KEY),
                    ("SEC-WEBSOCKET-VERSION", "13"),
                ],
                id="uppercase-names",
            ),
            pytest.param(
                [
                    ("Host", "a"),
                    ("Upgrade", "WebSocket"),
                    ("Connection", "upgrade"),
                    ("Sec-WebSocket-Key", RFC_KEY),
                    ("Sec-WebSocket-Version", "13"),
                ],
                id="mixed-case-tokens",
            ),
            pytest.param(
                [
                    ("Host", "a"),
                    ("Upgrade", "WEBSOCKET"),
                    ("Connection", "keep-alive, Upgrade"),
                    ("Sec-WebSocket-Key", RFC_KEY),
                    ("Sec-WebSocket-Version", "13"),
                ],
                id="connection-token-list",
            ),
            pytest.param(
                [
                    ("Host", "a"),
                    ("Upgrade", "websocket"),
                    ("Connection", "keep-alive,UPGRADE"),
                    ("Sec-WebSocket-Key", RFC_KEY),
                    ("Sec-WebSocket-Version", "13"),
                ],
                id="connection-list-no-space",
            ),
            pytest.param(
                [
                    ("Host", "a"),
                    ("Upgrade", "websocket"),
                    ("Connection", "keep-alive"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Key", RFC_KEY),
                    ("Sec-WebSocket-Version", "13"),
                ],
                id="connection-two-fields",
            ),
            pytest.param(
                [
                    ("Host", "a"),
                    ("Origin", "http://a"),
                    ("User-Agent", "test"),
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Key", f"  {RFC_KEY}\t"),
                    ("Sec-WebSocket-Version", "13"),
                ],
                id="extra-headers-and-whitespace",
            ),
        ],
    )
    def test_accepted_variants(self, headers: list[tuple[str, str]]) -> None:
        conn = Connection(Side.SERVER)
        event = receive_request(conn, request_head(headers=headers))
        conn.accept(event.request)
        assert conn.data_to_send() == RESPONSE_101

    @pytest.mark.parametrize(
        ("server", "offered", "chosen"),
        [
            pytest.param((), ["chat"], None, id="server-has-none"),
            pytest.param(("chat",), [], None, id="client-offers-none"),
            pytest.param(("chat",), ["chat"], "chat", id="match"),
            pytest.param(("chat",), ["superchat"], None, id="no-match"),
            pytest.param(("chat",), ["Chat"], None, id="case-sensitive"),
            pytest.param(("v2", "v1"), ["v1, v2"], "v2", id="server-preference-wins"),
            pytest.param(("v1",), ["x,v1"], "v1", id="list-without-spaces"),
            pytest.param(("v1",), ["x", "v1"], "v1", id="two-fields"),
        ],
    )
    def test_subprotocol(self, server: tuple[str, ...], offered: list[str], chosen: str | None) -> None:
        conn = Connection(Side.SERVER)
        event = receive_request(conn, request_head(extra=[("Sec-WebSocket-Protocol", v) for v in offered]))
        conn.accept(event.request, subprotocols=server)
        assert conn.subprotocol == chosen
        expected = RESPONSE_101
        if chosen is not None:
            expected = expected[:-2] + f"Sec-WebSocket-Protocol: {chosen}\r\n\r\n".encode()
        assert conn.data_to_send() == expected

    @pytest.mark.parametrize(
        "offer",
        [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover, x-webkit-deflate-frame",
        ],
    )
    def test_extensions_are_left_out(self, offer: str) -> None:
        conn = Connection(Side.SERVER)
        event = receive_request(conn, request_head(extra=[("Sec-WebSocket-Extensions", offer)]))
        conn.accept(event.request)
        out = conn.data_to_send()
        assert out == RESPONSE_101
        assert b"Extensions" not in out

    def test_extra_headers(self) -> None:
        conn = Connection(Side.SERVER)
        event = receive_request(conn, request_head())
        conn.accept(event.request, extra_headers=[("Server", "signaling")])
        assert conn.data_to_send() == RESPONSE_101[:-2] + b"Server: signaling\r\n\r\n"

    @pytest.mark.parametrize("step", [None, 1], ids=["same-chunk", "bytewise"])
    def test_pipelined_frames_parsed_after_accept(self, step: int | None) -> None:
        conn = Connection(Side.SERVER)
        frames = encode_frame(Opcode.TEXT, b"hi", mask=True) + encode_frame(Opcode.PING, b"p", mask=True)
        events = feed(conn, request_head() + frames, step)
        assert len(events) == 1 and isinstance(events[0], RequestReceived)
        assert conn.data_to_send() == b""
        conn.accept(events[0].request)
        assert conn.data_to_send() == RESPONSE_101
        assert conn.receive_data(b"") == [TextMessage("hi"), PingReceived(b"p")]
        assert conn.data_to_send() == encode_frame(Opcode.PONG, b"p")

    def test_frames_in_later_chunk_before_accept(self) -> None:
        conn = Connection(Side.SERVER)
        one = encode_frame(Opcode.TEXT, b"one", mask=True)
        event = receive_request(conn, request_head() + one[:3])
        assert conn.receive_data(one[3:] + encode_frame(Opcode.TEXT, b"two", mask=True)) == []
        conn.accept(event.request)
        assert conn.receive_data(b"") == [TextMessage("one"), TextMessage("two")]
        assert conn.receive_data(encode_frame(Opcode.TEXT, b"three", mask=True)) == [TextMessage("three")]


# Every rejection: HTTP status, and a header the response must carry.
REJECTIONS = [
    pytest.param(request_head(method="POST"), 405, b"Allow: GET", id="post"),
    pytest.param(request_head(method="HEAD"), 405, b"Allow: GET", id="head"),
    pytest.param(request_head(version="HTTP/1.0"), 400, None, id="http-1.0"),
    pytest.param(request_head(drop=["Host"]), 400, None, id="no-host"),
    pytest.param(request_head(extra=[("Host", "b")]), 400, None, id="two-hosts"),
    pytest.param(request_head(drop=["Upgrade"]), 400, None, id="no-upgrade"),
    pytest.param(request_head(drop=["Upgrade"], extra=[("Upgrade", "h2c")]), 400, None, id="upgrade-not-websocket"),
    pytest.param(request_head(drop=["Connection"]), 400, None, id="no-connection"),
    pytest.param(
        request_head(drop=["Connection"], extra=[("Connection", "keep-alive")]),
        400,
        None,
        id="connection-without-upgrade",
    ),
    pytest.param(request_head(drop=["Sec-WebSocket-Key"]), 400, None, id="no-key"),
    pytest.param(
        request_head(drop=["Sec-WebSocket-Key"], extra=[("Sec-WebSocket-Key", "not base64 at all!")]),
        400,
        None,
        id="key-not-base64",
    ),
    pytest.param(
        request_head(drop=["Sec-WebSocket-Key"], extra=[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ")]),
        400,
        None,
        id="key-no-padding",
    ),
    pytest.param(
        request_head(drop=["Sec-WebSocket-Key"], extra=[("Sec-WebSocket-Key", b64(15))]),
        400,
        None,
        id="key-15-bytes",
    ),
    pytest.param(
        request_head(drop=["Sec-WebSocket-Key"], extra=[("Sec-WebSocket-Key", b64(17))]),
        400,
        None,
        id="key-17-bytes",
    ),
    pytest.param(
        request_head(drop=["Sec-WebSocket-Key"], extra=[("Sec-WebSocket-Key", "")]), 400, None, id="key-empty"
    ),
    pytest.param(
        request_head(drop=["Sec-WebSocket-Key"], extra=[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZé==")]),
        400,
        None,
        id="key-non-ascii",
    ),
    pytest.param(request_head(extra=[("Sec-WebSocket-Key", RFC_KEY)]), 400, None, id="key-repeated"),
    pytest.param(request_head(drop=["Sec-WebSocket-Version"]), 426, b"Sec-WebSocket-Version: 13", id="no-version"),
    *[
        pytest.param(
            request_head(drop=["Sec-WebSocket-Version"], extra=[("Sec-WebSocket-Version", v)]),
            426,
            b"Sec-WebSocket-Version: 13",
            id=f"version-{v or 'empty'}",
        )
        for v in ["8", "12", "14", "", "13, 8"]
    ],
    pytest.param(
        request_head(extra=[("Sec-WebSocket-Version", "8")]),
        426,
        b"Sec-WebSocket-Version: 13",
        id="version-13-and-8",
    ),
]


class TestServerRejects:
    @pytest.mark.parametrize(("request_bytes", "status", "header"), REJECTIONS)
    def test_rejected(self, request_bytes: bytes, status: int, header: bytes | None) -> None:
        conn = Connection(Side.SERVER)
        event = receive_request(conn, request_bytes)
        with pytest.raises(HandshakeError) as info:
            conn.accept(event.request)
        assert info.value.status == status
        out = conn.data_to_send()
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"\r\nConnection: close\r\n" in head + b"\r\n"
        assert f"Content-Length: {len(body)}".encode() in head
        assert b"Upgrade: websocket" not in head
        if header is not None:
            assert b"\r\n" + header + b"\r\n" in head + b"\r\n"
        assert conn.state is State.CLOSED
        assert conn.close_transport
        assert conn.receive_data(encode_frame(Opcode.TEXT, b"x", mask=True)) == []
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize(
        ("data", "status"),
        [
            pytest.param(b"GARBAGE\r\n\r\n", 400, id="request-line"),
            pytest.param(b"GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, id="header-without-colon"),
            pytest.param(b"GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400, id="obs-fold"),
            pytest.param(b"GET / HTTP/1.1\r\nX: \x00\r\n\r\n", 400, id="nul-in-value"),
            pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, id="tls-hello"),
            pytest.param(b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505, id="http-3"),
        ],
    )
    @pytest.mark.parametrize("step", [None, 1], ids=["whole", "bytewise"])
    def test_malformed_head(self, data: bytes, status: int, step: int | None) -> None:
        conn = Connection(Side.SERVER)
        events = feed(conn, data + encode_frame(Opcode.TEXT, b"x", mask=True), step)
        assert len(events) == 1 and isinstance(events[0], BadRequest), events
        assert events[0].error.status == status
        assert conn.data_to_send().startswith(f"HTTP/1.1 {status} ".encode())
        assert conn.close_transport
        assert conn.state is State.CLOSED

    @pytest.mark.parametrize("step", [None, 1, 1024], ids=["whole", "bytewise", "1k-chunks"])
    def test_head_over_8_kib_is_431(self, step: int | None) -> None:
        conn = Connection(Side.SERVER)
        head = request_head(extra=[("X-Pad", "a" * 8192)])
        events = feed(conn, head, step)
        assert len(events) == 1 and isinstance(events[0], BadRequest)
        assert events[0].error.status == 431
        assert conn.data_to_send().startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert conn.close_transport

    def test_431_as_soon_as_the_limit_is_passed(self) -> None:
        conn = Connection(Side.SERVER, max_head_size=64)
        assert conn.receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * 45) == []  # 64 bytes, no terminator
        events = conn.receive_data(b"a")
        assert isinstance(events[0], BadRequest) and events[0].error.status == 431

    def test_custom_head_limit_accepts_up_to_it(self) -> None:
        head = request_head()
        conn = Connection(Side.SERVER, max_head_size=len(head))
        receive_request(conn, head)

    def test_reject_by_owner(self) -> None:
        conn = Connection(Side.SERVER)
        receive_request(conn, request_head())
        conn.reject(HandshakeError(403, "forbidden"))
        assert conn.data_to_send() == (
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Connection: close\r\nContent-Length: 10\r\n\r\nforbidden\n"
        )
        assert conn.close_transport and conn.state is State.CLOSED

    def test_plain_http_response(self) -> None:
        conn = Connection(Side.SERVER)
        event = receive_request(conn, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        assert not is_upgrade_request(event.request)
        conn.send_response(Response(200, Headers([("Content-Type", "text/plain")]), b"ok"))
        assert conn.data_to_send() == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
        assert conn.close_transport and conn.state is State.CLOSED


class TestServerMisuse:
    def test_accept_before_request(self) -> None:
        request = receive_request(Connection(Side.SERVER), request_head()).request
        with pytest.raises(InvalidState):
            Connection(Side.SERVER).accept(request)

    def test_accept_twice(self) -> None:
        conn = Connection(Side.SERVER)
        event = receive_request(conn, request_head())
        conn.accept(event.request)
        with pytest.raises(InvalidState):
            conn.accept(event.request)

    def test_send_before_handshake(self) -> None:
        conn = Connection(Side.SERVER)
        with pytest.raises(InvalidState):
            conn.send_text("x")
        with pytest.raises(InvalidState):
            conn.send_close()

    def test_send_request_on_server(self) -> None:
        with pytest.raises(InvalidState):
            Connection(Side.SERVER).send_request(ClientHandshake("a"))

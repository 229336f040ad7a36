"""http11.py: the head parser (whole, trickled, 8 KiB limit), request/response heads, Headers, serialization, and
the length of a request body."""

from __future__ import annotations

import pytest

from signaling.ws.exceptions import HandshakeError
from signaling.ws.http11 import (
    DEFAULT_MAX_HEAD,
    MAX_HEADERS,
    Headers,
    HeadParser,
    Request,
    RequestReader,
    Response,
    body_length,
    parse_request_head,
    parse_response_head,
)

from .helpers import request_head

HEAD = request_head()


class TestHeadParser:
    def test_whole(self) -> None:
        parser = HeadParser()
        assert parser.feed(HEAD + b"rest") == HEAD[:-4]
        assert parser.trailing == b"rest"

    def test_byte_by_byte(self) -> None:
        parser = HeadParser()
        for i in range(len(HEAD) - 1):
            assert parser.feed(HEAD[i : i + 1]) is None
        assert parser.feed(HEAD[-1:]) == HEAD[:-4]
        assert parser.trailing == b""

    @pytest.mark.parametrize("cut", range(1, 5), ids=lambda c: f"cut-{c}-from-end")
    def test_terminator_split(self, cut: int) -> None:
        parser = HeadParser()
        assert parser.feed(HEAD[:-cut]) is None
        assert parser.feed(HEAD[-cut:] + b"\x81") == HEAD[:-4]
        assert parser.trailing == b"\x81"

    def test_limit_is_8_kib(self) -> None:
        assert DEFAULT_MAX_HEAD == 8192

    @pytest.mark.parametrize("step", [None, 1, 1000], ids=["whole", "bytewise", "chunks"])
    @pytest.mark.parametrize(
        ("size", "ok"),
        [pytest.param(8192, True, id="exactly-8192"), pytest.param(8193, False, id="8193")],
    )
    def test_limit(self, size: int, ok: bool, step: int | None) -> None:
        """The limit counts the whole head, CRLF CRLF included."""
        filler = size - len(HEAD) - len("X-Pad: \r\n")
        head = HEAD[:-2] + b"X-Pad: " + b"a" * filler + b"\r\n\r\n"
        assert len(head) == size
        parser = HeadParser()
        step = step or size
        result = None
        try:
            for i in range(0, size, step):
                result = parser.feed(head[i : i + step])
        except HandshakeError as exc:
            assert not ok
            assert exc.status == 431
        else:
            assert ok
            assert result == head[:-4]

    def test_unterminated_head_fails_once_over_the_limit(self) -> None:
        parser = HeadParser(100)
        assert parser.feed(b"G" * 100) is None
        with pytest.raises(HandshakeError) as info:
            parser.feed(b"E")
        assert info.value.status == 431

    def test_bare_lf_is_not_a_terminator(self) -> None:
        assert HeadParser().feed(b"GET / HTTP/1.1\nHost: a\n\n") is None


class TestRequestHead:
    def test_parse(self) -> None:
        req = parse_request_head(b"GET /chat?room=1 HTTP/1.1\r\nHost: a\r\nX-A:  spaced \t\r\nX-Empty:")
        assert (req.method, req.target, req.version) == ("GET", "/chat?room=1", (1, 1))
        assert (req.path, req.query) == ("/chat", "room=1")
        assert list(req.headers) == [("Host", "a"), ("X-A", "spaced"), ("X-Empty", "")]

    def test_http_1_0(self) -> None:
        assert parse_request_head(b"GET / HTTP/1.0").version == (1, 0)

    @pytest.mark.parametrize(
        ("head", "status"),
        [
            pytest.param(b"", 400, id="empty"),
            pytest.param(b"GET /", 400, id="no-version"),
            pytest.param(b"GET / HTTP/1.1 x", 400, id="extra-token"),
            pytest.param(b"GET  / HTTP/1.1", 400, id="double-space"),
            pytest.param(b"GET / http/1.1", 400, id="lowercase-http"),
            pytest.param(b"GET / HTTP/11", 400, id="bad-version"),
            pytest.param(b"G(T / HTTP/1.1", 400, id="method-not-token"),
            pytest.param(b"GET /\x01 HTTP/1.1", 400, id="control-in-target"),
            pytest.param(b"\r\nGET / HTTP/1.1", 400, id="leading-empty-line"),
            pytest.param(b"GET / HTTP/2.0", 505, id="http2"),
            pytest.param(b"GET / HTTP/1.1\r\nHost", 400, id="header-without-colon"),
            pytest.param(b"GET / HTTP/1.1\r\nHost : a", 400, id="space-before-colon"),
            pytest.param(b"GET / HTTP/1.1\r\n: a", 400, id="empty-name"),
            pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n folded", 400, id="obs-fold"),
            pytest.param(b"GET / HTTP/1.1\r\nX: a\x00b", 400, id="nul-in-value"),
            pytest.param(b"GET / HTTP/1.1\r\nX: a\rb", 400, id="cr-in-value"),
            pytest.param(b"GET / HTTP/1.1\r\nX: a\nb", 400, id="lf-in-value"),
            pytest.param(b"GET / HTTP/1.1\r\nX\xff: a", 400, id="non-ascii-name"),
            pytest.param(b"GET / HTTP/1.1" + b"\r\nX: a" * (MAX_HEADERS + 1), 431, id="too-many-headers"),
        ],
    )
    def test_malformed(self, head: bytes, status: int) -> None:
        with pytest.raises(HandshakeError) as info:
            parse_request_head(head)
        assert info.value.status == status

    def test_max_headers_is_fine(self) -> None:
        assert len(parse_request_head(b"GET / HTTP/1.1" + b"\r\nX: a" * MAX_HEADERS).headers) == MAX_HEADERS


class TestResponseHead:
    @pytest.mark.parametrize(
        ("head", "status", "reason"),
        [
            pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket", 101, "", id="101"),
            pytest.param(b"HTTP/1.1 404", 404, "", id="no-reason"),
            pytest.param(b"HTTP/1.0 200 OK", 200, "OK", id="http-1.0"),
        ],
    )
    def test_parse(self, head: bytes, status: int, reason: str) -> None:
        resp = parse_response_head(head)
        assert resp.status == status
        if reason:
            assert resp.reason == reason

    @pytest.mark.parametrize(
        "head",
        [
            pytest.param(b"HTTP/1.1 1010 x", id="4-digit-status"),
            pytest.param(b"HTTP/2 101", id="http2"),
            pytest.param(b"ICY 200 OK", id="not-http"),
            pytest.param(b"HTTP/1.1 101 ok\r\nbad header", id="bad-header"),
        ],
    )
    def test_malformed(self, head: bytes) -> None:
        with pytest.raises(HandshakeError):
            parse_response_head(head)


class TestHeaders:
    def test_case_insensitive(self) -> None:
        h = Headers([("Sec-WebSocket-Key", "k"), ("x-a", "1"), ("X-A", "2")])
        assert h.get("sec-websocket-key") == "k"
        assert h.get("SEC-WEBSOCKET-KEY") == "k"
        assert h.get_all("X-a") == ["1", "2"]
        assert "SEC-websocket-KEY" in h
        assert "missing" not in h
        assert h.get("missing", "d") == "d"
        assert len(h) == 3

    @pytest.mark.parametrize(
        ("values", "tokens"),
        [
            pytest.param(["Upgrade"], ["upgrade"], id="single"),
            pytest.param(["keep-alive, Upgrade"], ["keep-alive", "upgrade"], id="list"),
            pytest.param(["keep-alive,UPGRADE ,"], ["keep-alive", "upgrade"], id="no-spaces-trailing-comma"),
            pytest.param(["keep-alive", "Upgrade"], ["keep-alive", "upgrade"], id="two-fields"),
            pytest.param([" , "], [], id="empty-elements"),
        ],
    )
    def test_tokens(self, values: list[str], tokens: list[str]) -> None:
        assert Headers([("connection", v) for v in values]).tokens("Connection") == tokens


class TestRequestSerialize:
    def test_request_line_and_headers(self) -> None:
        req = Request("GET", "/chat?room=1", (1, 1), Headers([("Host", "a"), ("X-Empty", "")]))
        assert req.serialize() == b"GET /chat?room=1 HTTP/1.1\r\nHost: a\r\nX-Empty: \r\n\r\n"

    def test_round_trip(self) -> None:
        req = Request("GET", "/ws", (1, 1), Headers([("Host", "h:1"), ("Upgrade", "websocket")]))
        assert parse_request_head(req.serialize()[:-4]) == req


#: A CR or LF where each part of a head goes: each would let a value start lines of its own (header injection).
INJECTIONS = [
    pytest.param("target", "\r\n", id="target-crlf"),
    pytest.param("target", "\n", id="target-lf"),
    pytest.param("name", "\r\n", id="name-crlf"),
    pytest.param("name", "\r", id="name-cr"),
    pytest.param("value", "\r\n", id="value-crlf"),
    pytest.param("value", "\n", id="value-lf"),
    pytest.param("value", "\r", id="value-cr"),
]


def injected(where: str, bad: str) -> tuple[str, Headers]:
    """A target and headers with ``bad`` inside the part ``where`` names."""
    target = f"/a{bad}X-Evil: 1" if where == "target" else "/a"
    name = f"X-A{bad}X-Evil" if where == "name" else "X-A"
    value = f"v{bad}X-Evil: 1" if where == "value" else "v"
    return target, Headers([(name, value)])


class TestHeaderInjection:
    @pytest.mark.parametrize(("where", "bad"), [p for p in INJECTIONS if p.values[0] != "target"])
    def test_response(self, where: str, bad: str) -> None:
        _, headers = injected(where, bad)
        with pytest.raises(ValueError, match="CR or LF"):
            Response(200, headers).serialize()

    @pytest.mark.parametrize(("where", "bad"), INJECTIONS)
    def test_request(self, where: str, bad: str) -> None:
        target, headers = injected(where, bad)
        with pytest.raises(ValueError, match="CR or LF"):
            Request("GET", target, (1, 1), headers).serialize()


class TestResponseSerialize:
    def test_101_has_no_content_length(self) -> None:
        resp = Response(101, Headers([("Upgrade", "websocket")]))
        assert resp.serialize() == b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"

    def test_error_has_content_length_and_body(self) -> None:
        resp = Response(404, Headers([("Content-Type", "text/plain")]), b"nope\n")
        assert resp.serialize() == (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nnope\n"
        )

    @pytest.mark.parametrize(
        ("status", "phrase"),
        [
            (101, b"Switching Protocols"),
            (200, b"OK"),
            (400, b"Bad Request"),
            (408, b"Request Timeout"),
            (426, b"Upgrade Required"),
            (429, b"Too Many Requests"),
            (431, b"Request Header Fields Too Large"),
            (503, b"Service Unavailable"),
        ],
        ids=str,
    )
    def test_standard_reason_phrase(self, status: int, phrase: bytes) -> None:
        assert Response(status).serialize().startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase))

    def test_custom_reason_and_unknown_status(self) -> None:
        """An unregistered status goes out with an empty reason phrase (RFC 9112 4 allows it), not an invented one."""
        assert Response(299, reason="Fine").serialize() == b"HTTP/1.1 299 Fine\r\nContent-Length: 0\r\n\r\n"
        assert Response(299).serialize() == b"HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n"
        assert parse_response_head(Response(299).serialize()[:-4]).status == 299

    def test_round_trip(self) -> None:
        raw = Response(426, Headers([("Sec-WebSocket-Version", "13")]), b"x").serialize()
        head, _, body = raw.partition(b"\r\n\r\n")
        parsed = parse_response_head(head)
        assert parsed.status == 426
        assert parsed.headers.get("sec-websocket-version") == "13"
        assert body == b"x"


def post(headers: list[tuple[str, str]]) -> Request:
    return Request("POST", "/api/v1/rooms/r/messages", (1, 1), Headers([("Host", "h"), *headers]))


class TestBodyLength:
    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            pytest.param([], 0, id="none"),
            pytest.param([("Content-Length", "0")], 0, id="zero"),
            pytest.param([("Content-Length", "12")], 12, id="twelve"),
            pytest.param([("content-length", " 12 ")], 12, id="any-case-and-spaces"),
            pytest.param([("Content-Length", "12, 12")], 12, id="a-repeated-list"),
            pytest.param([("Content-Length", "12"), ("Content-Length", "12")], 12, id="repeated-fields"),
            pytest.param([("Content-Length", "65536")], 65536, id="exactly-64-KiB"),
            pytest.param([("Content-Length", "65537")], 413, id="past-64-KiB"),
            pytest.param([("Content-Length", "9" * 40)], 413, id="huge"),
            pytest.param([("Content-Length", "12"), ("Content-Length", "13")], 400, id="conflicting-smuggling"),
            pytest.param([("Content-Length", "-1")], 400, id="negative"),
            pytest.param([("Content-Length", "1e3")], 400, id="not-digits"),
            pytest.param([("Content-Length", "\uff11\uff12")], 400, id="non-ascii-digits"),
            pytest.param([("Content-Length", "")], 400, id="empty"),
            pytest.param([("Transfer-Encoding", "chunked")], 411, id="chunked"),
            pytest.param([("Transfer-Encoding", "chunked"), ("Content-Length", "3")], 411, id="chunked-and-length"),
        ],
    )
    def test_table(self, headers: list[tuple[str, str]], expected: int) -> None:
        if expected in (400, 411, 413):
            with pytest.raises(HandshakeError) as error:
                body_length(post(headers))
            assert error.value.status == expected
        else:
            assert body_length(post(headers)) == expected

    def test_the_limit_is_the_callers(self) -> None:
        assert body_length(post([("Content-Length", "10")]), max_body=10) == 10
        with pytest.raises(HandshakeError):
            body_length(post([("Content-Length", "11")]), max_body=10)

    def test_a_body_is_serialized_after_the_head(self) -> None:
        request = post([("Content-Length", "2")])
        request.body = b"{}"
        assert request.serialize().endswith(b"\r\n\r\n{}")


class TestRequestReader:
    def test_byte_by_byte_with_what_follows(self) -> None:
        wire = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\x81\x80"
        reader = RequestReader(HeadParser())
        for i in range(len(wire) - 3):
            assert reader.feed(wire[i : i + 1]) is None
        request = reader.feed(wire[-3:])
        assert request is not None and request.body == b"hello" and reader.trailing == b"\x81\x80"

    def test_no_body_is_at_once(self) -> None:
        reader = RequestReader(HeadParser())
        request = reader.feed(HEAD + b"\x81")
        assert request is not None and request.body == b"" and reader.trailing == b"\x81"

    def test_a_refused_length_raises_before_the_body(self) -> None:
        with pytest.raises(HandshakeError) as error:
            RequestReader(HeadParser(), max_body=4).feed(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
        assert error.value.status == 413

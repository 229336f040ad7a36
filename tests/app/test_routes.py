"""Plain HTTP on the WebSocket port, over real sockets: health, 426, static files, traversal, errors.

Requests are written as raw bytes and responses read to EOF, so each test sees the exact response and that the
server closed the connection after it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from signaling.ws.aio.server import WebSocketServer
from tests.app.web_root import INDEX, SCRIPT, SECRET, STYLE, TRAVERSALS
from tests.ws.helpers import RFC_KEY

pytestmark = pytest.mark.timeout(30)


@dataclass
class HttpResponse:
    raw: bytes
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"repeated {name}"
        return values[0] if values else None


def parse_response(raw: bytes) -> HttpResponse:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {raw[:200]!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = []
    for line in lines:
        name, colon, value = line.partition(": ")
        assert colon, line
        headers.append((name, value))
    return HttpResponse(raw, int(status), reason, headers, body)


async def exchange(port: int, request: bytes) -> HttpResponse:
    """Send ``request``, read until the server closes the connection, parse what came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            raw = await reader.read()  # to EOF: fails the test by timeout if the server keeps the connection
    finally:
        writer.close()
    return parse_response(raw)


def get(target: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode("latin-1")


@pytest.fixture
async def server(start_signaling, web_root: Path) -> WebSocketServer:
    return await start_signaling(web_root=web_root)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- endpoints


async def test_healthz_is_json_status_ok(server: WebSocketServer) -> None:
    r = await exchange(server.port, get("/healthz"))
    assert r.status == 200
    assert r.header("Content-Type") == "application/json"
    assert r.header("Cache-Control") == "no-store"
    assert r.header("Content-Length") == str(len(r.body))
    assert r.header("Connection") == "close"
    health = json.loads(r.body)
    assert health["status"] == "ok"
    assert health["connections"] == 0


async def test_healthz_head_and_query_string(server: WebSocketServer) -> None:
    full = await exchange(server.port, get("/healthz?verbose=1"))
    assert full.status == 200
    head = await exchange(server.port, get("/healthz", "HEAD"))
    assert head.status == 200
    assert head.body == b""
    assert int(head.header("Content-Length") or -1) > 0


async def test_metrics(server: WebSocketServer) -> None:
    r = await exchange(server.port, get("/metrics"))
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/plain")  # type: ignore[union-attr]
    assert b"signaling_connections 0.0\n" in r.body


async def test_ws_path_without_upgrade_is_426(server: WebSocketServer) -> None:
    r = await exchange(server.port, get("/ws"))
    assert r.status == 426
    assert r.reason == "Upgrade Required"
    assert r.header("Upgrade") == "websocket"
    assert r.header("Sec-WebSocket-Version") == "13"
    assert b"WebSocket" in r.body


async def test_upgrade_on_another_path_is_404(server: WebSocketServer) -> None:
    upgrade = (
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    )
    for target in ("/", "/wss", "/ws/", "/healthz", "/index.html"):
        r = await exchange(server.port, get(target, extra=upgrade))
        assert r.status == 404, target
        assert r.header("Sec-WebSocket-Accept") is None


# ------------------------------------------------------------------------------------------- static files


async def test_index_and_content_types(server: WebSocketServer) -> None:
    for target, ctype, body in [
        ("/", "text/html; charset=utf-8", INDEX),
        ("/?room=demo", "text/html; charset=utf-8", INDEX),
        ("/index.html", "text/html; charset=utf-8", INDEX),
        ("/app.js", "text/javascript; charset=utf-8", SCRIPT),
        ("/style.css", "text/css; charset=utf-8", STYLE),
        ("/sub/page.html", "text/html; charset=utf-8", "<p>sub page</p>\n"),
        ("/sub/", "text/html; charset=utf-8", "<p>sub index</p>\n"),
        ("/sub", "text/html; charset=utf-8", "<p>sub index</p>\n"),
        ("/alias.js", "text/javascript; charset=utf-8", SCRIPT),
        ("/%61pp.js", "text/javascript; charset=utf-8", SCRIPT),  # percent-encoded 'a'
    ]:
        r = await exchange(server.port, get(target))
        assert r.status == 200, target
        assert r.header("Content-Type") == ctype, target
        assert r.body == body.encode(), target
        assert r.header("Content-Length") == str(len(body.encode()))
        assert r.header("X-Content-Type-Options") == "nosniff"
        assert r.header("Cache-Control") == "no-cache"
        assert r.header("Last-Modified")


async def test_etag_and_conditional_requests(server: WebSocketServer) -> None:
    first = await exchange(server.port, get("/app.js"))
    etag = first.header("ETag")
    assert etag and etag.startswith('"') and etag.endswith('"')
    last_modified = first.header("Last-Modified")
    assert last_modified
    again = await exchange(server.port, get("/app.js"))
    assert again.header("ETag") == etag  # stable for an unchanged file

    for extra in (
        f"If-None-Match: {etag}\r\n",
        f'If-None-Match: "other", {etag}\r\n',
        "If-None-Match: *\r\n",
        f"If-Modified-Since: {last_modified}\r\n",
    ):
        r = await exchange(server.port, get("/app.js", extra=extra))
        assert r.status == 304, extra
        assert r.body == b""
        assert r.header("ETag") == etag
        # RFC 9110 8.6: a 304 may carry Content-Length only as the size the 200 would have had.
        assert r.header("Content-Length") in (None, str(len(SCRIPT))), r.raw

    for extra in ('If-None-Match: "stale"\r\n', "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"):
        r = await exchange(server.port, get("/app.js", extra=extra))
        assert r.status == 200, extra
        assert r.body == SCRIPT.encode()


async def test_etag_changes_with_the_file(server: WebSocketServer, web_root: Path) -> None:
    first = await exchange(server.port, get("/style.css"))
    (web_root / "style.css").write_text(STYLE + "p { margin: 0; }\n")
    second = await exchange(server.port, get("/style.css", extra=f"If-None-Match: {first.header('ETag')}\r\n"))
    assert second.status == 200
    assert second.header("ETag") != first.header("ETag")
    assert second.body.endswith(b"p { margin: 0; }\n")


async def test_head_has_length_and_no_body(server: WebSocketServer) -> None:
    r = await exchange(server.port, get("/", "HEAD"))
    assert r.status == 200
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert r.header("Content-Length") == str(len(INDEX.encode()))
    assert r.body == b""
    assert r.raw.endswith(b"\r\n\r\n")
    # Error answers to HEAD carry no content either (RFC 9110 9.3.2), only the length a GET would get.
    for target, status in (("/nope", 404), ("/ws", 426)):
        full = await exchange(server.port, get(target))
        head = await exchange(server.port, get(target, "HEAD"))
        assert (head.status, full.status) == (status, status)
        assert head.body == b""
        assert head.header("Content-Length") == str(len(full.body)) != "0"


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_and_unknown_paths_are_404(server: WebSocketServer, target: str) -> None:
    for method in ("GET", "HEAD"):
        r = await exchange(server.port, get(target, method))
        assert r.status == 404, (method, target, r.raw[:200])
        assert SECRET.encode() not in r.raw
        assert b"secret" not in r.body
        if method == "HEAD":
            assert r.body == b""


async def test_other_methods_are_405_with_allow(server: WebSocketServer) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for target in ("/", "/healthz", "/app.js", "/nope"):
            body = "x=1" if method in ("POST", "PUT") else ""
            extra = f"Content-Length: {len(body)}\r\n" if body else ""
            r = await exchange(server.port, get(target, method, extra) + body.encode())
            assert r.status == 405, (method, target)
            assert r.header("Allow") == "GET, HEAD"


# --------------------------------------------------------------------------------------- malformed requests


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"garbage\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
        (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  continued\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-Bad: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (9 * 1024) + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", 431),
    ],
    ids=[
        "garbage",
        "no-target",
        "extra-token",
        "control-char",
        "no-colon",
        "obs-fold",
        "space-before-colon",
        "nul-in-value",
        "http2",
        "9KiB-head",
        "150-headers",
    ],
)
async def test_malformed_requests_get_an_error_and_the_connection_closes(
    server: WebSocketServer, request_bytes: bytes, status: int
) -> None:
    r = await exchange(server.port, request_bytes)  # read to EOF: the server closed the connection
    assert r.status == status, r.raw[:200]
    assert r.header("Connection") == "close"
    assert r.header("Content-Length") == str(len(r.body))


async def test_endless_head_is_cut_at_the_limit(server: WebSocketServer) -> None:
    """A client that keeps sending header bytes gets 431 after 8 KiB, without the server waiting for the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (12 * 1024))  # no end of head
    async with asyncio.timeout(5):
        raw = await reader.read()
    writer.close()
    assert parse_response(raw).status == 431


async def test_one_request_per_connection(server: WebSocketServer) -> None:
    """Pipelined requests: the first is answered, then the connection closes (no keep-alive here)."""
    r = await exchange(server.port, get("/app.js") + get("/style.css"))
    assert r.status == 200
    assert r.body == SCRIPT.encode()
    assert r.header("Connection") == "close"


async def test_http10_request(server: WebSocketServer) -> None:
    r = await exchange(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert r.status == 200
    assert json.loads(r.body)["status"] == "ok"


async def test_no_web_root_means_404_for_files_but_health_works(start_signaling, tmp_path: Path) -> None:
    server = await start_signaling(web_root=tmp_path / "missing")
    assert (await exchange(server.port, get("/"))).status == 404
    assert (await exchange(server.port, get("/healthz"))).status == 200

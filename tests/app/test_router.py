"""The HTTP router and the static-file resolver as pure functions: requests in, responses out, no sockets.

tests/app/test_routes.py checks the same routes over real sockets (framing, connection close); this file is the
table of what each request gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signaling.app.routes import StaticFiles, http_response
from signaling.ws.http11 import Headers, Request, Response
from tests.app.web_root import INDEX, SCRIPT, SECRET, TRAVERSALS


def request(target: str, method: str = "GET", headers: tuple[tuple[str, str], ...] = ()) -> Request:
    return Request(method, target, (1, 1), Headers([("Host", "127.0.0.1"), *headers]))


def route(req: Request, static: StaticFiles | None) -> Response:
    return http_response(req, ws_path="/ws", static=static, health=lambda: {"status": "ok"}, metrics=lambda: b"m 1\n")


@pytest.fixture
def static(web_root: Path) -> StaticFiles:
    return StaticFiles(web_root)


@pytest.mark.parametrize(
    ("target", "relative"),
    [
        ("/", "index.html"),
        ("/index.html", "index.html"),
        ("/app.js", "app.js"),
        ("/sub/", "sub/index.html"),
        ("/sub", "sub/index.html"),
        ("/sub/page.html", "sub/page.html"),
        ("/%61pp.js", "app.js"),  # percent-decoded once
        ("/alias.js", "app.js"),  # a symlink that stays inside
        ("//app.js", "app.js"),
    ],
)
def test_resolve_finds_files_inside_the_root(static: StaticFiles, web_root: Path, target: str, relative: str) -> None:
    assert static.resolve(target) == (web_root / relative).resolve()


@pytest.mark.parametrize("target", [t for t in TRAVERSALS if t not in ("/%ff%fe", "/%")])
def test_resolve_never_leaves_the_root(static: StaticFiles, target: str) -> None:
    assert static.resolve(target.split("?")[0]) is None


@pytest.mark.parametrize("target", ["/%ff%fe", "/%"])
def test_undecodable_paths_are_not_found(static: StaticFiles, target: str) -> None:
    response = static.response(request(target))
    assert response is None


ROUTE = ("method", "target", "status", "header", "value")
#: What each route answers: the WebSocket path without an upgrade, the probes, the static files, the refusals.
WEBSOCKET_PATH = [("GET", "/ws", 426, "Upgrade", "websocket"), ("HEAD", "/ws", 426, "Sec-WebSocket-Version", "13")]
PROBES = [
    ("GET", "/healthz", 200, "Content-Type", "application/json"),
    ("GET", "/healthz?verbose=1", 200, "Cache-Control", "no-store"),
    ("GET", "/metrics", 200, "Content-Type", "text/plain; version=1.0.0; charset=utf-8"),
    ("GET", "/readyz", 200, "Cache-Control", "no-store"),
]
STATIC = [
    ("GET", "/", 200, "Content-Type", "text/html; charset=utf-8"),
    ("GET", "/app.js", 200, "Content-Type", "text/javascript; charset=utf-8"),
    ("GET", "/app.js", 200, "X-Content-Type-Options", "nosniff"),
]
NOT_ALLOWED = (("POST", "/"), ("DELETE", "/healthz"), ("OPTIONS", "/ws"))
REFUSALS = [
    ("GET", "/nope", 404, "Content-Type", "text/plain; charset=utf-8"),
    *((method, target, 405, "Allow", "GET, HEAD") for method, target in NOT_ALLOWED),
]


@pytest.mark.parametrize(ROUTE, [*WEBSOCKET_PATH, *PROBES, *STATIC, *REFUSALS])
def test_routes(static: StaticFiles, method: str, target: str, status: int, header: str, value: str) -> None:
    response = route(request(target, method), static)
    assert response.status == status
    assert response.headers.get(header) == value


def test_bodies(static: StaticFiles) -> None:
    assert json.loads(route(request("/healthz"), static).body) == {"status": "ok"}
    assert route(request("/metrics"), static).body == b"m 1\n"
    assert route(request("/"), static).body == INDEX.encode()
    assert route(request("/app.js"), static).body == SCRIPT.encode()
    assert route(request("/nope"), static).body == b"not found\n"


@pytest.mark.parametrize("target", ["/", "/app.js", "/healthz", "/nope", "/ws"])
def test_head_has_the_length_of_get_and_no_body(static: StaticFiles, target: str) -> None:
    get = route(request(target), static)
    head = route(request(target, "HEAD"), static)
    assert head.status == get.status
    assert head.body == b""
    assert head.headers.get("Content-Length") == str(len(get.body))


def test_conditional_get(static: StaticFiles) -> None:
    first = route(request("/app.js"), static)
    etag = first.headers.get("ETag")
    assert etag is not None and first.headers.get("Cache-Control") == "no-cache"
    again = route(request("/app.js", headers=(("If-None-Match", etag),)), static)
    assert (again.status, again.body) == (304, b"")
    assert again.headers.get("Content-Length") == str(len(SCRIPT))
    stale = route(request("/app.js", headers=(("If-None-Match", '"other"'),)), static)
    assert stale.status == 200
    since = route(
        request("/app.js", headers=(("If-Modified-Since", first.headers.get("Last-Modified") or ""),)), static
    )
    assert since.status == 304
    for date in ("yesterday", "01 Jan 99999999999999999999 00:00:00 GMT", "Mon, 32 Foo 2024 99:99:99 GMT"):
        garbage = route(request("/app.js", headers=(("If-Modified-Since", date),)), static)
        assert garbage.status == 200, date  # no date is no condition: the file, never a 500


def test_without_a_web_root_files_are_404_and_health_still_works() -> None:
    assert route(request("/"), None).status == 404
    assert route(request("/healthz"), None).status == 200


def test_secret_never_in_any_response(static: StaticFiles) -> None:
    for target in TRAVERSALS:
        for method in ("GET", "HEAD"):
            response = route(request(target, method), static)
            assert response.status == 404, (method, target)
            assert SECRET.encode() not in response.serialize()

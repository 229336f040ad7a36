"""Plain HTTP on the WebSocket port: health, metrics, the WebSocket path's 426, and the static web/ files.

Small on purpose: the sans-I/O HTTP parser of the transport reads the head, these functions build the
response, and the connection closes after it. No web framework; request bodies are for the server API (api.py).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Callable
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote

from signaling.ws.http11 import Headers, Request, Response

from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["SECURITY_HEADERS", "StaticFiles", "http_response", "not_found", "refused"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
    ".woff2": "font/woff2",
}
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


def _text(status: int, body: str, extra: tuple[tuple[str, str], ...] = (), *, head: bool = False) -> Response:
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), *SECURITY_HEADERS, *extra])
    data = (body + "\n").encode("utf-8")
    if head:  # RFC 9110 9.3.2: the same headers as GET, never content
        headers.add("Content-Length", str(len(data)))
        return Response(status, headers)
    return Response(status, headers, data)


class StaticFiles:
    """Serves files below ``root``; nothing outside it, whatever the encoding of the path."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def resolve(self, path: str) -> Path | None:
        """The file for a URL path, or None. Percent-decoding happens once, before any check."""
        decoded = unquote(path, errors="strict") if "%" in path else path
        if "\x00" in decoded or "\\" in decoded:
            return None
        parts = [p for p in decoded.split("/") if p]
        # No "..", and no hidden files (".git", ".env"...).
        if any(p.startswith(".") for p in parts):
            return None
        candidate = self.root.joinpath(*parts) if parts else self.root
        if decoded.endswith("/") and parts and not candidate.is_dir():
            return None  # "/app.js/" names a folder that does not exist
        if candidate.is_dir():
            candidate = candidate / "index.html"
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None  # e.g. a symlink pointing out of root
        return resolved

    def response(self, request: Request) -> Response | None:
        try:
            file = self.resolve(request.path)
        except UnicodeDecodeError:
            return None
        if file is None:
            return None
        stat = file.stat()
        etag = '"' + hashlib.sha1(f"{stat.st_mtime_ns}-{stat.st_size}".encode()).hexdigest()[:20] + '"'
        content_type = _TYPES.get(file.suffix.lower()) or mimetypes.guess_type(file.name)[0]
        headers = Headers(
            [
                ("Content-Type", content_type or "application/octet-stream"),
                # No build step means no fingerprinted names: let caches keep files, but revalidate each time.
                ("Cache-Control", "no-cache"),
                ("ETag", etag),
                ("Last-Modified", formatdate(stat.st_mtime, usegmt=True)),
                *SECURITY_HEADERS,
            ]
        )
        if _not_modified(request, etag, stat.st_mtime):
            # RFC 9110 8.6: a 304's Content-Length, if any, is the 200's; never the 0 of its empty body.
            headers.add("Content-Length", str(stat.st_size))
            return Response(304, headers)
        body = file.read_bytes()
        if request.method == "HEAD":
            headers.add("Content-Length", str(len(body)))
            return Response(200, headers)
        return Response(200, headers, body)


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        return etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*"
    ims = request.headers.get("If-Modified-Since")
    if ims is not None:
        try:
            return int(mtime) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, OverflowError):  # a garbage date is no date: send the file
            return False
    return False


def http_response(
    request: Request,
    *,
    ws_path: str,
    static: StaticFiles | None,
    health: Callable[[], dict[str, object]],
    ready: Callable[[], bool] = lambda: True,
    metrics: Callable[[], bytes] | None = None,
) -> Response:
    """The answer to a request that is not a WebSocket upgrade."""
    path = request.path
    if request.method not in ("GET", "HEAD"):
        return _text(405, "method not allowed", (("Allow", "GET, HEAD"),))
    if path == ws_path:
        return _text(
            426,
            "this is the signaling WebSocket endpoint: connect with a WebSocket client",
            (("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")),
            head=request.method == "HEAD",
        )
    if path == "/healthz":
        body = json.dumps(health(), separators=(",", ":")).encode()
        headers = Headers([("Content-Type", "application/json"), ("Cache-Control", "no-store"), *SECURITY_HEADERS])
        return _head_aware(request, Response(200, headers, body))
    if path == "/readyz":
        up = ready()
        status, text = (200, "ready") if up else (503, "not ready")
        return _text(status, text, (("Cache-Control", "no-store"),), head=request.method == "HEAD")
    if path == "/metrics" and metrics is not None:
        headers = Headers([("Content-Type", METRICS_CONTENT_TYPE), ("Cache-Control", "no-store")])
        return _head_aware(request, Response(200, headers, metrics()))
    if static is not None:
        response = static.response(request)
        if response is not None:
            return response
    return not_found(request)


def refused(status: int, text: str, *, retry_after: float | None = None) -> Response:
    """A refused WebSocket handshake (403, 429...): a plain-text reason, and when to retry if that helps."""
    extra = (("Retry-After", str(max(1, round(retry_after)))),) if retry_after is not None else ()
    return _text(status, text, extra)


def not_found(request: Request) -> Response:
    return _text(404, "not found", head=request.method == "HEAD")


def _head_aware(request: Request, response: Response) -> Response:
    if request.method == "HEAD":
        response.headers.add("Content-Length", str(len(response.body)))
        response.body = b""
    return response

"""The HTTP/1.1 subset the opening handshake and the small HTTP routes need (RFC 9110/9112), sans-I/O.

Heads are parsed here; a request's body only when it has a Content-Length (``body_length``: the server API's
small JSON bodies), never a chunked one, and a client only reads the 101 response head. Bytes after the head
(and body) are handed back untouched, because in a WebSocket upgrade they are already frames.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus

from .exceptions import HandshakeError

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_HEAD",
    "HeadParser",
    "Headers",
    "Request",
    "RequestReader",
    "Response",
    "body_length",
    "parse_request_head",
    "parse_response_head",
]

#: Longest request or response head accepted, terminator included: 8 KiB, nginx's default, far above any real upgrade.
DEFAULT_MAX_HEAD = 8192
MAX_HEADERS = 100
#: Largest request body read: a server API request is a small JSON document (larger: 413).
DEFAULT_MAX_BODY = 64 * 1024

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^ \x00-\x1f\x7f]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_HEADER_NAME = re.compile(_TOKEN)
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class Headers:
    """Header fields in arrival order; lookups by name are case-insensitive (RFC 9110 5.1)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower()
        for k, v in self._items:
            if k.lower() == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self._items if k.lower() == key]

    def tokens(self, name: str) -> list[str]:
        """The comma-separated values of every ``name`` field, lower-cased and stripped (RFC 9110 5.6.1)."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(t.strip().lower() for t in value.split(",") if t.strip())
        return out

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        # Fields in order, names as received: what makes Request/Response and the events comparable with ==.
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: tuple[int, int]
    headers: Headers
    #: What followed the head, ``Content-Length`` bytes (``body_length``); empty for most requests.
    body: bytes = b""

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def serialize(self) -> bytes:
        """Request line, headers, CRLF CRLF, body (its Content-Length is the caller's to set)."""
        major, minor = self.version
        return _serialize_head(f"{self.method} {self.target} HTTP/{major}.{minor}", self.headers) + self.body


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    reason: str = ""

    def serialize(self) -> bytes:
        """Status line, headers, CRLF CRLF, body. Content-Length is added for every non-101 response."""
        fields: Iterable[tuple[str, str]] = self.headers
        if self.status != 101 and "Content-Length" not in self.headers:
            fields = [*fields, ("Content-Length", str(len(self.body)))]
        reason = self.reason or _phrase(self.status)
        return _serialize_head(f"HTTP/1.1 {self.status} {reason}", fields) + self.body


def _serialize_head(start_line: str, fields: Iterable[tuple[str, str]]) -> bytes:
    """A start line and header fields, each line ended by CRLF, then the empty line.

    A CR or LF anywhere raises ValueError: it would let a value (a header, a target) add lines of its own to the
    head, header injection (RFC 9112 2.2, 5).
    """
    lines = [start_line, *(f"{k}: {v}" for k, v in fields)]
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError(f"CR or LF in {line[:60]!r}: that would split the head")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def _phrase(status: int) -> str:
    """The registered reason phrase; empty for a status the standard library does not know (RFC 9112 4)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _parse_fields(lines: list[bytes]) -> Headers:
    if len(lines) > MAX_HEADERS:
        raise HandshakeError(431, "too many header fields")
    headers = Headers()
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise HandshakeError(400, "header line without a colon")
        if not _HEADER_NAME.fullmatch(name):
            # Also rejects obs-fold (leading whitespace) and whitespace before the colon (RFC 9112 5.1).
            raise HandshakeError(400, f"invalid header name {name[:40]!r}")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise HandshakeError(400, f"invalid characters in header {name.decode('ascii')}")
        headers.add(name.decode("ascii"), value.decode("latin-1"))
    return headers


def parse_request_head(head: bytes) -> Request:
    """A request head without its final CRLF CRLF."""
    request_line, *lines = head.split(b"\r\n")
    m = _REQUEST_LINE.fullmatch(request_line)
    if m is None:
        raise HandshakeError(400, "malformed request line")
    method, target, major, minor = m.groups()
    if major != b"1":
        raise HandshakeError(505, "only HTTP/1.x is supported")
    return Request(
        method=method.decode("ascii"),
        target=target.decode("latin-1"),
        version=(1, int(minor)),
        headers=_parse_fields(lines),
    )


def body_length(request: Request, max_body: int = DEFAULT_MAX_BODY) -> int:
    """How many body bytes follow ``request``'s head (RFC 9112 6.3): its Content-Length, 0 without one.

    Raises:
        HandshakeError: 411 for a Transfer-Encoding (chunked bodies are not read: send a Content-Length), 400 for
            a Content-Length that is not a number or disagrees with another (request smuggling), 413 past
            ``max_body``.
    """
    if "Transfer-Encoding" in request.headers:
        raise HandshakeError(411, "send the body with a Content-Length, not a Transfer-Encoding")
    values = {v.strip() for field in request.headers.get_all("Content-Length") for v in field.split(",")}
    if not values:
        return 0
    if len(values) > 1:
        raise HandshakeError(400, "conflicting Content-Length values")
    (text,) = values
    if not text.isascii() or not text.isdigit():
        raise HandshakeError(400, "Content-Length is not a number")
    if len(text) > 18 or int(text) > max_body:  # 18 digits: no huge integer is parsed
        raise HandshakeError(413, f"the body is larger than {max_body} bytes")
    return int(text)


def parse_response_head(head: bytes) -> Response:
    """A response head without its final CRLF CRLF."""
    status_line, *lines = head.split(b"\r\n")
    m = _STATUS_LINE.fullmatch(status_line)
    if m is None:
        raise HandshakeError(400, "malformed status line")
    return Response(
        status=int(m.group(2)),
        headers=_parse_fields(lines),
        reason=(m.group(3) or b"").decode("latin-1"),
    )


class HeadParser:
    """Collects bytes until CRLF CRLF, byte by byte or all at once, remembering where it searched.

    ``feed`` returns the head (terminator excluded) once complete; the bytes after it stay in ``trailing``.
    A head longer than ``max_size`` raises a 431 before more is buffered.
    """

    __slots__ = ("_buf", "_scanned", "max_size", "trailing")

    def __init__(self, max_size: int = DEFAULT_MAX_HEAD) -> None:
        self._buf = bytearray()
        self._scanned = 0
        self.max_size = max_size
        self.trailing = b""

    def feed(self, data: bytes) -> bytes | None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(self._buf)
            if self._scanned > self.max_size:
                raise HandshakeError(431, "head too large")
            return None
        if end + 4 > self.max_size:
            raise HandshakeError(431, "head too large")
        head = bytes(self._buf[:end])
        self.trailing = bytes(self._buf[end + 4 :])
        self._buf = bytearray()
        return head


class RequestReader:
    """A server's reading of one request: its head (``head``, a HeadParser), then its Content-Length body.

    ``feed`` returns the request once its body is complete (at once when it has none); the bytes after it stay
    in ``trailing``. A head or a body the server refuses raises HandshakeError (``body_length``).
    """

    __slots__ = ("_body", "_length", "_request", "head", "max_body", "trailing")

    def __init__(self, head: HeadParser, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.head = head
        self.max_body = max_body
        self.trailing = b""
        self._request: Request | None = None
        self._length = 0
        self._body = b""

    def feed(self, data: bytes) -> Request | None:
        request = self._request
        if request is None:
            head = self.head.feed(data)
            if head is None:
                return None
            request = self._request = parse_request_head(head)
            self._length = body_length(request, self.max_body)
            data = self.head.trailing
        self._body += data
        if len(self._body) < self._length:
            return None
        request.body, self.trailing = self._body[: self._length], self._body[self._length :]
        self._body = b""
        return request

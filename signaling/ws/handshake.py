"""The opening handshake (RFC 6455 section 4): server-side checks and the 101, client-side request and checks.

The classic bugs of hand-written servers live here: a wrong Sec-WebSocket-Accept, a head that does not end
in CRLF CRLF, tokens compared case-sensitively. Every rule cites its clause. A server's failure is a
HandshakeError carrying the HTTP status to answer with; a client's is an InvalidHandshake (InvalidStatus for a
refusal), carrying the response.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from .exceptions import HandshakeError, InvalidHandshake, InvalidStatus
from .http11 import Headers, Request, Response

__all__ = [
    "GUID",
    "ClientHandshake",
    "accept_key",
    "build_accept_response",
    "check_request",
    "is_upgrade_request",
    "reject_response",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)) (4.2.2 step 5.4)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def is_upgrade_request(request: Request) -> bool:
    """Whether the client asks to switch to WebSocket, before any detailed check (routing uses this)."""
    return "websocket" in request.headers.tokens("Upgrade")


@dataclass(frozen=True, slots=True)
class AcceptedRequest:
    key: str
    subprotocol: str | None


def check_request(request: Request, subprotocols: Sequence[str] = ()) -> AcceptedRequest:
    """Validates a client's opening handshake (4.2.1) and picks the subprotocol.

    ``subprotocols`` are the server's, in order of preference; the first one the client also offers wins.
    """
    # 4.2.1 (1): an HTTP/1.1 or higher GET request.
    if request.method != "GET":
        raise HandshakeError(405, "the WebSocket handshake must be a GET", [("Allow", "GET")])
    if request.version < (1, 1):
        raise HandshakeError(400, "the WebSocket handshake needs HTTP/1.1")
    headers = request.headers
    # (2): a Host header field.
    if len(headers.get_all("Host")) != 1:
        raise HandshakeError(400, "missing or repeated Host header")
    # (3), (4): Upgrade has "websocket", Connection has "Upgrade"; both case-insensitive token lists.
    if "websocket" not in headers.tokens("Upgrade"):
        raise HandshakeError(400, "Upgrade header must name websocket")
    if "upgrade" not in headers.tokens("Connection"):
        raise HandshakeError(400, "Connection header must contain Upgrade")
    # (6): Sec-WebSocket-Version 13, else 426 with the version we speak (4.4).
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions != ["13"]:
        raise HandshakeError(
            426, "unsupported Sec-WebSocket-Version, this server speaks 13", [("Sec-WebSocket-Version", "13")]
        )
    # (5): Sec-WebSocket-Key, base64 of 16 bytes.
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise HandshakeError(400, "missing or repeated Sec-WebSocket-Key")
    key = keys[0]
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise HandshakeError(400, "Sec-WebSocket-Key is not base64") from None
    if len(raw) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key must encode 16 bytes")
    # (8): subprotocols are optional; we pick at most one of those offered.
    chosen = None
    if subprotocols:
        offered = [t.strip() for v in headers.get_all("Sec-WebSocket-Protocol") for t in v.split(",")]
        chosen = next((p for p in subprotocols if p in offered), None)
    # (9): extensions are never accepted, so an offered permessage-deflate is simply left out of the response.
    return AcceptedRequest(key=key, subprotocol=chosen)


def build_accept_response(accepted: AcceptedRequest, extra_headers: Sequence[tuple[str, str]] = ()) -> Response:
    """The 101 response (4.2.2 step 5)."""
    headers = Headers(
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(accepted.key)),
        ]
    )
    if accepted.subprotocol is not None:
        headers.add("Sec-WebSocket-Protocol", accepted.subprotocol)
    for name, value in extra_headers:
        headers.add(name, value)
    return Response(101, headers)


def reject_response(error: HandshakeError) -> Response:
    """A plain-text error response for a failed handshake or a malformed request; then the connection ends."""
    headers = Headers(error.headers)
    headers.add("Content-Type", "text/plain; charset=utf-8")
    headers.add("Connection", "close")
    return Response(error.status, headers, (error.reason + "\n").encode("utf-8"))


class ClientHandshake:
    """The client side of 4.1: a fresh random key per connection, and every check of the server's answer."""

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        subprotocols: Sequence[str] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
        origin: str | None = None,
    ) -> None:
        """Raises ValueError, before anything is sent, when a CR or LF in any part would split the request."""
        self.key = base64.b64encode(secrets.token_bytes(16)).decode("ascii")
        self.subprotocols = list(subprotocols)
        headers = Headers(
            [
                ("Host", host),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", self.key),
                ("Sec-WebSocket-Version", "13"),
            ]
        )
        if self.subprotocols:
            headers.add("Sec-WebSocket-Protocol", ", ".join(self.subprotocols))
        if origin is not None:
            headers.add("Origin", origin)
        for name, value in extra_headers:
            headers.add(name, value)
        self.request = Request("GET", target, (1, 1), headers)
        #: Serialized now, so that a bad header fails here rather than once a socket is open.
        self.request_bytes = self.request.serialize()

    def check_response(self, response: Response) -> str | None:
        """Validates the server's answer (4.1, "the client MUST validate"); returns the chosen subprotocol.

        Raises:
            InvalidStatus: the status is not 101.
            InvalidHandshake: a 101 that breaks one of 4.1's rules.
        """
        if response.status != 101:
            raise InvalidStatus(response)
        headers = response.headers
        if "websocket" not in headers.tokens("Upgrade"):
            raise InvalidHandshake("101 without Upgrade: websocket", response)
        if "upgrade" not in headers.tokens("Connection"):
            raise InvalidHandshake("101 without Connection: Upgrade", response)
        if headers.get_all("Sec-WebSocket-Accept") != [accept_key(self.key)]:
            raise InvalidHandshake("wrong Sec-WebSocket-Accept", response)
        if headers.get_all("Sec-WebSocket-Extensions"):
            raise InvalidHandshake("server chose an extension that was not offered", response)
        protocols = headers.get_all("Sec-WebSocket-Protocol")
        if not protocols:
            return None
        if len(protocols) != 1 or protocols[0] not in self.subprotocols:
            raise InvalidHandshake("server chose a subprotocol that was not offered", response)
        return protocols[0]

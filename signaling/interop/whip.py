"""WHIP (RFC 9725) and WHEP: the pure parts of the HTTP endpoints that hand a broadcaster's (or a player's) SDP
offer to a peer of a room and its answer back.

The session behind an endpoint is a synthetic peer of the room (``meta`` ``{"kind": "whip"}`` or ``"whep"``);
what is here decides, from plain values, which peer answers, what a trickle PATCH body says, how the ICE servers
of ``welcome`` become ``Link`` headers, and which HTTP status a signaling error is. No sockets, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from signaling.protocol.errors import ErrorCode
from signaling.protocol.facts import ENDPOINT_KINDS
from signaling.protocol.models import IceCandidate, IceServer, PeerInfo

__all__ = [
    "MAX_FRAGMENT_CANDIDATES",
    "SDPFRAG_TYPE",
    "SDP_TYPE",
    "SdpFragment",
    "choose_receiver",
    "endpoint_kind",
    "ice_credentials",
    "ice_link_headers",
    "if_match",
    "media_type",
    "offer_error",
    "offer_mids",
    "parse_sdpfrag",
    "quoted",
    "status_for",
]

SDP_TYPE: Final = "application/sdp"
SDPFRAG_TYPE: Final = "application/trickle-ice-sdpfrag"
#: Candidates one PATCH may carry: a client gathers a handful per interface; more is a flood, not ICE.
MAX_FRAGMENT_CANDIDATES: Final = 64

#: The HTTP status of a signaling error met while opening a session (the body says which).
_STATUS: Final[Mapping[ErrorCode, int]] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.BAD_JSON: 400,
    ErrorCode.ROOM_FULL: 409,
    ErrorCode.UNKNOWN_PEER: 404,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
}


def status_for(code: str) -> int:
    """The HTTP status for an ``error`` message's code (500 for one that should never happen here)."""
    try:
        return _STATUS.get(ErrorCode(code), 500)
    except ValueError:
        return 500


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lowercased, without parameters ("" when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def endpoint_kind(meta: Mapping[str, Any] | None) -> str | None:
    """``"whip"`` or ``"whep"`` for a peer that is such a session (by its ``meta``), else None."""
    kind = meta.get("kind") if meta is not None else None
    return kind if kind in ENDPOINT_KINDS else None


def choose_receiver(peers: Sequence[PeerInfo], wanted: str | None) -> str | None:
    """The peer that answers: ``wanted`` if it is in the room (``?peer=``; never a silent fallback), else the
    longest present (``welcome.peers`` is in join order) that is not itself a WHIP or WHEP session."""
    if wanted is not None:
        return wanted if any(p.peer == wanted for p in peers) else None
    return next((p.peer for p in peers if endpoint_kind(p.meta) is None), None)


def offer_error(sdp: str) -> str | None:
    """Why ``sdp`` cannot be an offer to relay (None: it can): the shape check a relay can afford."""
    if not sdp.startswith("v=0"):
        return "the body is not an SDP offer (it must start with v=0)"
    if "\nm=" not in sdp:
        return "the SDP offer has no media section"
    return None


_ATTRIBUTE = re.compile(r"^a=([A-Za-z0-9-]+)(?::(.*))?$")


def _lines(sdp: str) -> Iterable[str]:
    return (line.strip() for line in sdp.splitlines())


def offer_mids(sdp: str) -> dict[str, int]:
    """Each ``a=mid`` of the offer and the index of its m-line (what ``sdpMLineIndex`` counts)."""
    mids: dict[str, int] = {}
    index = -1
    for line in _lines(sdp):
        if line.startswith("m="):
            index += 1
        elif line.startswith("a=mid:") and index >= 0:
            mids.setdefault(line[6:], index)
    return mids


def ice_credentials(sdp: str) -> tuple[str | None, str | None]:
    """The first ``a=ice-ufrag`` and ``a=ice-pwd`` of an SDP (or fragment): whose ICE session it is."""
    ufrag = pwd = None
    for line in _lines(sdp):
        if ufrag is None and line.startswith("a=ice-ufrag:"):
            ufrag = line[12:]
        elif pwd is None and line.startswith("a=ice-pwd:"):
            pwd = line[10:]
    return ufrag, pwd


@dataclass(slots=True)
class SdpFragment:
    """A trickle PATCH body (RFC 8840 as RFC 9725 uses it): the ICE credentials it names, its candidates as
    RTCIceCandidateInit dicts, and whether it ends the candidates."""

    ufrag: str | None = None
    pwd: str | None = None
    candidates: list[IceCandidate] = field(default_factory=list)
    end: bool = False


def parse_sdpfrag(text: str, mids: Mapping[str, int]) -> SdpFragment:
    """Read a trickle-ice-sdpfrag body; ``mids`` maps the offer's mids to m-line indexes. Raises ValueError for
    a body that is no fragment (a line that is not an SDP line, too many candidates)."""
    fragment = SdpFragment()
    mid: str | None = None
    first_mid = next(iter(mids), None)
    for line in _lines(text):
        if not line:
            continue
        if line.startswith("m="):
            mid = None
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise ValueError(f"not an SDP line: {line[:40]!r}")
        match = _ATTRIBUTE.match(line)
        if match is None:
            continue  # c=, o=... lines a fragment may carry: nothing to relay
        name, value = match.group(1), match.group(2) or ""
        if name == "ice-ufrag":
            fragment.ufrag = value
        elif name == "ice-pwd":
            fragment.pwd = value
        elif name == "mid":
            mid = value
        elif name == "end-of-candidates":
            fragment.end = True
        elif name == "candidate":
            if len(fragment.candidates) >= MAX_FRAGMENT_CANDIDATES:
                raise ValueError(f"more than {MAX_FRAGMENT_CANDIDATES} candidates in one fragment")
            where = mid if mid is not None else first_mid
            index = mids.get(where) if where is not None else None
            fragment.candidates.append({"candidate": "candidate:" + value, "sdpMid": where, "sdpMLineIndex": index})
    return fragment


def if_match(header: str | None, etag: str) -> bool:
    """Whether a PATCH's ``If-Match`` lets it through: absent (RFC 9725 accepts a trickle without it), ``*``,
    or a list naming the session's entity tag (weak tags never match, RFC 9110 13.1.1)."""
    if header is None:
        return True
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or etag in tags


def quoted(value: str) -> str:
    """An HTTP quoted-string (RFC 9110 5.6.4): backslash before ``"`` and ``\\``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _url_ok(url: str) -> bool:
    return bool(url) and not any(c in url for c in '<>" \t\r\n,;')


def ice_link_headers(servers: Iterable[IceServer]) -> list[str]:
    """``Link`` header values for the ICE servers ``welcome`` gives (RFC 9725 4.6): one per URL, TURN ones with
    their username and credential. A URL that a Link header cannot carry is left out."""
    links: list[str] = []
    for server in servers:
        urls = [server.urls] if isinstance(server.urls, str) else server.urls
        for url in urls:
            if not _url_ok(url):
                continue
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None and server.credential is not None:
                link += f"; username={quoted(server.username)}; credential={quoted(server.credential)}"
                link += '; credential-type="password"'
            links.append(link)
    return links

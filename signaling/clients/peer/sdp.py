"""SDP and ICE helpers: candidates out of an SDP and back into aiortc, fingerprints, ICE servers, host addresses.

* ICE servers come only from ``welcome.iceServers``: aiortc falls back to a public STUN server when given
  ``None``, so an explicit (possibly empty) list is always passed (:func:`rtc_ice_servers`).
* ``--host-address`` swaps ``aioice.ice.get_host_addresses``, the one function aioice uses to list local
  addresses (:func:`restrict_host_addresses`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

from signaling.protocol.models import IceCandidate, IceServer

if TYPE_CHECKING:
    from aiortc import RTCIceCandidate, RTCIceServer

__all__ = [
    "candidate_from_init",
    "fingerprints",
    "restrict_host_addresses",
    "rtc_ice_servers",
    "sdp_candidates",
]


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Make aioice gather host candidates on exactly ``addresses`` (loopback allowed, which aioice skips).

    aioice lists local addresses through ``aioice.ice.get_host_addresses`` only, so swapping that function
    is enough; it affects every RTCPeerConnection created afterwards in this process.
    """
    import aioice.ice

    parsed = [ipaddress.ip_address(a) for a in addresses]
    v4 = [str(a) for a in parsed if a.version == 4]
    v6 = [str(a) for a in parsed if a.version == 6]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return (v4 if use_ipv4 else []) + (v6 if use_ipv6 else [])

    aioice.ice.get_host_addresses = get_host_addresses


def sdp_candidates(sdp: str) -> list[IceCandidate]:
    """Every ``a=candidate`` line of an SDP as an RTCIceCandidateInit (with sdpMid, sdpMLineIndex, ufrag)."""
    found: list[IceCandidate] = []
    session_ufrag: str | None = None
    index = -1
    section: list[str] = []
    mid: str | None = None
    ufrag: str | None = None

    def flush() -> None:
        for line in section:
            cand: IceCandidate = {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index}
            if ufrag or session_ufrag:
                cand["usernameFragment"] = ufrag or session_ufrag
            found.append(cand)

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if index >= 0:
                flush()
            index += 1
            section, mid, ufrag = [], None, None
        elif line.startswith("a=ice-ufrag:"):
            if index < 0:
                session_ufrag = line.split(":", 1)[1]
            else:
                ufrag = line.split(":", 1)[1]
        elif index >= 0 and line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        elif index >= 0 and line.startswith("a=candidate:"):
            section.append(line[2:])
    if index >= 0:
        flush()
    return found


def candidate_from_init(init: IceCandidate) -> RTCIceCandidate:
    """An aiortc RTCIceCandidate from a trickled RTCIceCandidateInit."""
    from aiortc.sdp import candidate_from_sdp

    text = init["candidate"]
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text.split(":", 1)[1]
    cand = candidate_from_sdp(text)
    cand.sdpMid = init.get("sdpMid")
    cand.sdpMLineIndex = init.get("sdpMLineIndex")
    return cand


def fingerprints(sdp: str) -> set[str]:
    """The DTLS certificate fingerprints of an SDP; new ones mean a new RTCPeerConnection on that side."""
    return {line.split(":", 1)[1].strip().lower() for line in sdp.splitlines() if line.startswith("a=fingerprint:")}


def rtc_ice_servers(servers: Sequence[IceServer]) -> list[RTCIceServer]:
    from aiortc import RTCIceServer

    return [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in servers]

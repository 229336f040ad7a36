"""The ICE servers a peer gets in ``welcome`` (and later in ``ice-servers``): static STUN/TURN entries plus, when a
TURN secret is set, short-lived TURN credentials of its own.

TURN REST credentials, as coturn's ``use-auth-secret`` checks them: ``username`` is ``<unix expiry>:<peer id>``
and ``credential`` is base64(HMAC-SHA1(secret, username)). Nothing is stored per peer: coturn recomputes the HMAC.
A credential expires, so a session is refreshed at half its lifetime, well before a long call would need it to
restart ICE. Pure: the clock is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from signaling.protocol.encode import ice_servers_json
from signaling.protocol.models import IceServer

__all__ = ["IceServerList", "IceServersFor", "TurnCredentials"]


class TurnCredentials:
    """Mints TURN REST credentials for ``urls`` (``turn:``/``turns:``), valid ``ttl`` seconds."""

    def __init__(self, secret: str, urls: Sequence[str], ttl: float) -> None:
        if not secret or not urls or ttl <= 0:
            raise ValueError("TURN credentials need a secret, at least one URL and a positive ttl")
        self._key = secret.encode("utf-8")
        self.urls = list(urls)
        self.ttl = ttl
        #: Credentials handed out since start (for /metrics).
        self.issued = 0

    def for_peer(self, peer: str, now: float) -> tuple[IceServer, float]:
        """The RTCIceServer entry for ``peer`` and the time it expires."""
        expires = int(now + self.ttl)
        username = f"{expires}:{peer}"
        digest = hmac.new(self._key, username.encode("utf-8"), hashlib.sha1).digest()
        self.issued += 1
        server = IceServer(urls=self.urls, username=username, credential=base64.b64encode(digest).decode("ascii"))
        return server, float(expires)


@dataclass(frozen=True, slots=True)
class IceServersFor:
    """One peer's ICE servers, rendered as the JSON array of ``iceServers``, and when to refresh them."""

    json: str
    refresh_at: float | None  # None: nothing expires


class IceServerList:
    """The static servers (rendered once) plus a peer's own TURN credentials when configured."""

    def __init__(self, static: Sequence[IceServer] = (), turn: TurnCredentials | None = None) -> None:
        self.static = list(static)
        self.turn = turn
        self._static_json = ice_servers_json(self.static)

    def for_peer(self, peer: str, now: float) -> IceServersFor:
        if self.turn is None:
            return IceServersFor(self._static_json, None)
        server, expires = self.turn.for_peer(peer, now)
        # Refresh at half-life: a peer that misses one refresh (a reconnect) still has valid credentials.
        return IceServersFor(ice_servers_json([*self.static, server]), now + (expires - now) / 2)

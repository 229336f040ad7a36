"""Which browser pages may open a WebSocket here (cross-site WebSocket hijacking).

Browsers send ``Origin`` with every WebSocket handshake and let any page open a socket to any server, with the
user's cookies; the server must refuse origins it does not know. Allowed: the server's own origin (the page it
serves, whatever name it is reached by: the Origin's host and port equal the Host header's), the configured
origins, or every origin with ``*``. A request without ``Origin`` is not from a browser page (a CLI, a Python or
aiortc client), so hijacking does not apply, and it is allowed; room tokens are what limits those.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["OriginPolicy"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _authority(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, or None when it is not one (``null``, garbage)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _host_header(host: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + host.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port


class OriginPolicy:
    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.any = "*" in allowed
        self.allowed = {a for a in (_authority(o) for o in allowed if o != "*") if a is not None}
        bad = [o for o in allowed if o != "*" and _authority(o) is None]
        if bad:
            raise ValueError(f"not an origin (scheme://host[:port]): {', '.join(bad)}")

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None or self.any:
            return True
        parsed = _authority(origin)
        if parsed is None:
            return False
        if parsed in self.allowed:
            return True
        own = _host_header(host) if host else None
        if own is None:
            return False
        scheme, name, port = parsed
        own_name, own_port = own
        # Without a port in Host, the page was reached on its scheme's default port (a TLS proxy in front, say).
        return name == own_name and (port == own_port if own_port is not None else port == _DEFAULT_PORTS[scheme])

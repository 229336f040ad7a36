"""Who the client is: its address, from the TCP peer or, behind a trusted reverse proxy, from the proxy's header.

A forwarding header is believed only when the TCP peer is a configured proxy; then the client is the last
address in the chain that is not itself a trusted proxy (the one the outermost trusted proxy saw). Anything a
client writes further left is ignored, so it cannot pick the address its limits are counted against.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal

from signaling.ws.aio.interface import IPNetwork
from signaling.ws.http11 import Headers

__all__ = ["ClientAddresses", "ProxyHeader", "parse_networks"]

ProxyHeader = Literal["x-forwarded-for", "forwarded"]


def parse_networks(items: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _host(token: str) -> str | None:
    """The IP address in one hop of a forwarding header (``1.2.3.4``, ``1.2.3.4:5``, ``[::1]:5``, ``"..."``)."""
    token = token.strip().strip('"')
    if token.startswith("["):
        token = token[1 : token.find("]")] if "]" in token else ""
    elif token.count(":") == 1:
        token = token.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(token))
    except ValueError:
        return None


def _hops(headers: Headers, header: ProxyHeader) -> list[str | None]:
    if header == "x-forwarded-for":
        return [_host(part) for value in headers.get_all("X-Forwarded-For") for part in value.split(",")]
    hops: list[str | None] = []
    for value in headers.get_all("Forwarded"):
        for element in value.split(","):
            found: str | None = None
            for pair in element.split(";"):
                key, _, item = pair.partition("=")
                if key.strip().lower() == "for":
                    found = _host(item)
            hops.append(found)
    return hops


class ClientAddresses:
    """Resolves the client address of a request, trusting ``header`` only from ``trusted`` proxies."""

    def __init__(self, trusted: Sequence[IPNetwork] = (), header: ProxyHeader = "x-forwarded-for") -> None:
        self.trusted = tuple(trusted)
        self.header = header

    def is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def resolve(self, peer_host: str | None, headers: Headers) -> str:
        if peer_host is None:
            return "-"
        if not self.trusted or not self.is_trusted(peer_host):
            return peer_host
        client = peer_host
        for hop in reversed(_hops(headers, self.header)):
            if hop is None:
                break  # unreadable: nothing further left can be trusted either
            client = hop
            if not self.is_trusted(hop):
                break
        return client

"""Who the client is and whether it may connect, as pure functions: the address behind trusted proxies, the
Origin check, and the per-address connection limits."""

from __future__ import annotations

import pytest

from signaling.app.address_limits import AddressLimits
from signaling.app.addresses import ClientAddresses, parse_networks
from signaling.app.origins import OriginPolicy
from signaling.ws.http11 import Headers

PROXIES = parse_networks(["10.0.0.0/8", "192.0.2.1"])


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        pytest.param("203.0.113.9", [("X-Forwarded-For", "1.2.3.4")], "203.0.113.9", id="untrusted-peer"),
        pytest.param("10.1.1.1", [], "10.1.1.1", id="proxy-without-header"),
        pytest.param("10.1.1.1", [("X-Forwarded-For", "198.51.100.7")], "198.51.100.7", id="one-proxy"),
        pytest.param(
            "10.1.1.1", [("X-Forwarded-For", "6.6.6.6, 198.51.100.7")], "198.51.100.7", id="client-spoofs-left-part"
        ),
        pytest.param("10.1.1.1", [("X-Forwarded-For", "198.51.100.7, 10.2.2.2")], "198.51.100.7", id="two-proxies"),
        pytest.param(
            "10.1.1.1",
            [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")],
            "198.51.100.7",
            id="repeated-header",
        ),
        pytest.param("10.1.1.1", [("X-Forwarded-For", "garbage, 198.51.100.7")], "198.51.100.7", id="garbage-left"),
        pytest.param("10.1.1.1", [("X-Forwarded-For", "198.51.100.7, garbage")], "10.1.1.1", id="garbage-right"),
        pytest.param("10.1.1.1", [("X-Forwarded-For", "[2001:db8::1]:4711")], "2001:db8::1", id="ipv6-port"),
        pytest.param("10.1.1.1", [("X-Forwarded-For", "10.3.3.3")], "10.3.3.3", id="all-trusted-leftmost"),
    ],
)
def test_x_forwarded_for(peer: str, headers: list[tuple[str, str]], client: str) -> None:
    assert ClientAddresses(PROXIES).resolve(peer, Headers(headers)) == client


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ("for=198.51.100.7;proto=https", "198.51.100.7"),
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("for=6.6.6.6, for=198.51.100.7;by=10.1.1.1", "198.51.100.7"),
        ("for=_hidden, for=198.51.100.7", "198.51.100.7"),
        ("proto=https", "10.1.1.1"),
    ],
)
def test_forwarded(value: str, client: str) -> None:
    addresses = ClientAddresses(PROXIES, "forwarded")
    assert addresses.resolve("10.1.1.1", Headers([("Forwarded", value)])) == client
    # The header it does not trust is ignored even from a proxy.
    assert addresses.resolve("10.1.1.1", Headers([("X-Forwarded-For", "9.9.9.9")])) == "10.1.1.1"


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert ClientAddresses().resolve("10.1.1.1", Headers([("X-Forwarded-For", "1.2.3.4")])) == "10.1.1.1"
    assert ClientAddresses().resolve(None, Headers()) == "-"


@pytest.mark.parametrize(
    ("allowed", "origin", "host", "ok"),
    [
        pytest.param((), None, "h:8765", True, id="no-origin-not-a-browser"),
        pytest.param((), "http://127.0.0.1:8765", "127.0.0.1:8765", True, id="own-origin"),
        pytest.param((), "http://LOCALHOST:8765", "localhost:8765", True, id="own-origin-case"),
        pytest.param((), "https://call.example", "call.example", True, id="own-origin-behind-tls-proxy"),
        pytest.param((), "https://call.example:8443", "call.example", False, id="own-name-other-port"),
        pytest.param((), "https://evil.example", "call.example", False, id="other-site"),
        pytest.param((), "http://127.0.0.1:9999", "127.0.0.1:8765", False, id="other-port"),
        pytest.param((), "null", "h", False, id="null-origin"),
        pytest.param((), "garbage", "h", False, id="garbage"),
        pytest.param(("https://app.example",), "https://app.example", "api.example", True, id="listed"),
        pytest.param(("https://app.example",), "https://app.example:443", "api.example", True, id="listed-port"),
        pytest.param(("https://app.example",), "http://app.example", "api.example", False, id="listed-other-scheme"),
        pytest.param(("*",), "https://anything.example", "api.example", True, id="star"),
    ],
)
def test_origin_policy(allowed: tuple[str, ...], origin: str | None, host: str, ok: bool) -> None:
    assert OriginPolicy(allowed).allows(origin, host) is ok


def test_a_misspelt_allowed_origin_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        OriginPolicy(["app.example"])


def test_concurrent_connections_per_address() -> None:
    limits = AddressLimits(max_per_address=2, rate=0, burst=1)
    for _ in range(2):
        assert limits.check("a", 0) is None
        limits.opened("a")
    refusal = limits.check("a", 0)
    assert refusal is not None and refusal.reason == "connections_per_ip"
    assert limits.check("b", 0) is None
    limits.closed("a")
    assert limits.check("a", 0) is None
    limits.closed("a")
    limits.closed("a")
    assert limits.open == {}


def test_new_connections_per_second_per_address() -> None:
    limits = AddressLimits(max_per_address=0, rate=2, burst=3)
    assert [limits.check("a", 0) is None for _ in range(4)] == [True, True, True, False]
    refusal = limits.check("a", 0)
    assert refusal is not None and refusal.reason == "connection_rate_per_ip" and refusal.retry_after >= 0.5
    assert limits.check("a", 0.5) is None  # one connection's worth came back


def test_rate_buckets_are_bounded() -> None:
    limits = AddressLimits(max_per_address=0, rate=1, burst=1, max_addresses=100)
    for i in range(1000):
        limits.check(f"10.0.{i // 256}.{i % 256}", 0)
    assert len(limits._buckets) == 100


def test_an_exempt_address_is_never_refused() -> None:
    """A trusted proxy's own address: the wiring passes ``ClientAddresses.is_trusted``."""
    limits = AddressLimits(max_per_address=1, rate=1, burst=1, exempt=lambda address: address == "proxy")
    for _ in range(3):
        assert limits.check("proxy", 0) is None
        limits.opened("proxy")
    assert limits.check("a", 0) is None
    limits.opened("a")
    assert limits.check("a", 0) is not None

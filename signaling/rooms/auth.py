"""Room tokens: who may join which room, as a JWT (HS256) signed with the server's secret.

A token carries ``exp`` and ``room`` (a room name, or a prefix ending in ``*``) and may carry ``name``, which then
is the peer's name whatever the client sends. Every refusal is an ``unauthorized`` error whose message says what
was wrong, and the connection stays open; an address that keeps failing is throttled before any token is checked,
so guessing costs the guesser, not the server. Pure: the clock is passed in (PyJWT's own expiry check is turned
off and done here against it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import jwt

from signaling.protocol.errors import ErrorCode, SignalingError, shorten
from signaling.protocol.models import Join

__all__ = [
    "MIN_SECRET_LENGTH",
    "AuthThrottle",
    "Grant",
    "JoinAuthorizer",
    "RoomTokens",
]

ALGORITHM: Final = "HS256"
#: Shorter HMAC keys can be brute-forced offline from any token seen (RFC 7518 3.2 asks for 256 bits).
MIN_SECRET_LENGTH: Final = 32
#: Longest token looked at: a real one is a few hundred bytes; parsing megabytes of base64 is a gift to attackers.
MAX_TOKEN_LENGTH: Final = 4096


def _refused(message: str) -> SignalingError:
    return SignalingError(ErrorCode.UNAUTHORIZED, message)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token allows: the room pattern it names, the name it imposes, when it expires."""

    room: str
    name: str | None
    expires_at: float

    def covers(self, room: str) -> bool:
        if self.room.endswith("*"):
            return room.startswith(self.room[:-1])
        return room == self.room


class RoomTokens:
    """Issues and checks room tokens with one shared secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the auth secret must be at least {MIN_SECRET_LENGTH} characters")
        self._key = secret.encode("utf-8")

    def issue(self, room: str, ttl: float, now: float, name: str | None = None) -> str:
        """A token for ``room`` (exact, or a prefix ending in ``*``) valid for ``ttl`` seconds from ``now``."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        claims: dict[str, Any] = {"room": room, "exp": int(now + ttl), "iat": int(now)}
        if name is not None:
            claims["name"] = name
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str | None, room: str, now: float) -> Grant:
        """The grant of ``token`` for joining ``room`` at ``now``.

        Raises:
            SignalingError: ``unauthorized``, saying whether the token is missing, malformed, wrongly signed,
                expired, incomplete or for another room.
        """
        if not token:
            raise _refused("this server needs a room token: send join with a token for this room")
        if len(token) > MAX_TOKEN_LENGTH:
            raise _refused(f"malformed token: longer than {MAX_TOKEN_LENGTH} characters")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "room"]},
            )
        except jwt.InvalidSignatureError:
            raise _refused("token signature is invalid: it was not signed with this server's secret") from None
        except jwt.InvalidAlgorithmError:
            raise _refused(f"token algorithm is not {ALGORITHM}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refused(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            raise _refused(f"malformed token: {shorten(str(exc), 120)}") from None
        exp, claimed_room, name = claims["exp"], claims["room"], claims.get("name")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise _refused("malformed token: exp is not a number")
        if not isinstance(claimed_room, str) or not claimed_room:
            raise _refused("malformed token: room is not a room name")
        if name is not None and not isinstance(name, str):
            raise _refused("malformed token: name is not a string")
        if exp <= now:
            raise _refused(f"token expired {now - exp:.0f} s ago: ask for a new one")
        grant = Grant(claimed_room, name, float(exp))
        if not grant.covers(room):
            raise _refused(f"token is for room {shorten(claimed_room)!r}, not {room!r}")
        return grant


class AuthThrottle:
    """Failed token checks per client address: past ``max_failures`` within ``window`` seconds, the address's bad
    tokens are answered without saying what is wrong with them until the window has passed. A valid token is
    never refused for it: behind one address (an office NAT) a guesser must not lock its neighbours out.

    Memory is bounded: at most ``max_addresses`` addresses are remembered, the oldest forgotten first.
    """

    def __init__(self, max_failures: int = 10, window: float = 60.0, *, max_addresses: int = 10_000) -> None:
        if max_failures < 1 or window <= 0:
            raise ValueError("max_failures must be >= 1 and window > 0")
        self.max_failures = max_failures
        self.window = window
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> list[float]:
        times = self._failures.get(address)
        if times is None:
            return []
        cutoff = now - self.window
        while times and times[0] <= cutoff:
            times.pop(0)
        if not times:
            del self._failures[address]
        return times

    def retry_after(self, address: str, now: float) -> float | None:
        """Seconds until ``address`` may try a token again; None when it may now."""
        times = self._recent(address, now)
        if len(times) < self.max_failures:
            return None
        return times[-self.max_failures] + self.window - now

    def failed(self, address: str, now: float) -> None:
        times = self._recent(address, now)
        if not times:
            self._failures[address] = times
        times.append(now)
        del times[: -self.max_failures]  # only the last max_failures matter
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)


class JoinAuthorizer:
    """The join check a session calls: the token, then, for a bad one, the address throttle.

    ``for_client(address)`` gives the callable a Session takes as ``authorize``: it returns the name the token
    imposes (None: the client's own name stands) or raises ``unauthorized``.
    """

    def __init__(self, tokens: RoomTokens, throttle: AuthThrottle, clock: Callable[[], float]) -> None:
        self.tokens = tokens
        self.throttle = throttle
        self.clock = clock

    def for_client(self, address: str) -> Callable[[Join], str | None]:
        def authorize(join: Join) -> str | None:
            return self.check(join.token, join.room, address)

        return authorize

    def check(self, token: str | None, room: str, address: str) -> str | None:
        """The name ``token`` imposes in ``room`` (None: the client's own), or ``unauthorized`` raised; a failure
        counts against ``address``. Other protocols (signaling/interop/) check their tokens here too."""
        now = self.clock()
        try:
            grant = self.tokens.verify(token, room, now)
        except SignalingError:
            wait = self.throttle.retry_after(address, now)
            self.throttle.failed(address, now)
            if wait is not None:  # a guesser learns nothing more; a valid token would still pass
                raise _refused(f"too many failed tokens from your address: details withheld for {wait:.0f} s") from None
            raise
        return grant.name

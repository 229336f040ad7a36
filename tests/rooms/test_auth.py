"""Room tokens and the failed-token throttle (pure: the clock is passed in)."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from signaling.protocol.errors import ErrorCode, SignalingError
from signaling.protocol.models import Join
from signaling.rooms.auth import MIN_SECRET_LENGTH, AuthThrottle, JoinAuthorizer, RoomTokens

SECRET = "s" * MIN_SECRET_LENGTH
NOW = 1_800_000_000.0


@pytest.fixture
def tokens() -> RoomTokens:
    return RoomTokens(SECRET)


def refusal(tokens: RoomTokens, token: str | None, room: str = "demo", now: float = NOW) -> str:
    with pytest.raises(SignalingError) as info:
        tokens.verify(token, room, now)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    return info.value.message


def forged(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_a_token_for_the_room_grants_it(tokens: RoomTokens) -> None:
    token = tokens.issue("demo", 3600, NOW)
    grant = tokens.verify(token, "demo", NOW + 3599)
    assert (grant.room, grant.name, grant.expires_at) == ("demo", None, NOW + 3600)


def test_the_name_claim_comes_back(tokens: RoomTokens) -> None:
    assert tokens.verify(tokens.issue("demo", 60, NOW, name="Ada"), "demo", NOW).name == "Ada"


@pytest.mark.parametrize(
    ("pattern", "room", "ok"),
    [("team-*", "team-a", True), ("team-*", "team-", True), ("team-*", "tea", False), ("*", "anything", True)],
)
def test_a_prefix_ending_in_star(tokens: RoomTokens, pattern: str, room: str, ok: bool) -> None:
    token = tokens.issue(pattern, 60, NOW)
    if ok:
        assert tokens.verify(token, room, NOW).room == pattern
    else:
        assert "is for room 'team-*', not 'tea'" in refusal(tokens, token, room)


@pytest.mark.parametrize(
    ("token", "says"),
    [
        pytest.param(None, "needs a room token", id="missing"),
        pytest.param("", "needs a room token", id="empty"),
        pytest.param("not.a.jwt", "malformed token", id="malformed"),
        pytest.param("x" * 5000, "malformed token: longer than", id="huge"),
        pytest.param(
            forged({"room": "demo", "exp": NOW + 60}, key="k" * 32), "signature is invalid", id="wrong-secret"
        ),
        pytest.param(forged({"room": "demo", "exp": NOW - 5}), "expired 5 s ago", id="expired"),
        pytest.param(forged({"room": "other", "exp": NOW + 60}), "is for room 'other', not 'demo'", id="other-room"),
        pytest.param(forged({"exp": NOW + 60}), "lacks the 'room' claim", id="no-room"),
        pytest.param(forged({"room": "demo"}), "lacks the 'exp' claim", id="no-exp"),
        pytest.param(forged({"room": "demo", "exp": "soon"}), "malformed token", id="exp-not-a-number"),
        pytest.param(forged({"room": 5, "exp": NOW + 60}), "room is not a room name", id="room-not-a-string"),
        pytest.param(forged({"room": "demo", "exp": NOW + 60, "name": 5}), "name is not a string", id="bad-name"),
        pytest.param(
            forged({"room": "demo", "exp": NOW + 60}, key="k" * 64, algorithm="HS512"), "algorithm", id="hs512"
        ),
    ],
)
def test_every_refusal_says_why(tokens: RoomTokens, token: str | None, says: str) -> None:
    assert says in refusal(tokens, token)


def test_alg_none_is_refused(tokens: RoomTokens) -> None:
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    unsigned = b64({"alg": "none", "typ": "JWT"}) + "." + b64({"room": "demo", "exp": NOW + 60}) + "."
    assert "algorithm" in refusal(tokens, unsigned) or "malformed" in refusal(tokens, unsigned)


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        RoomTokens("short")


def test_the_throttle_blocks_an_address_after_its_failures_for_the_window() -> None:
    throttle = AuthThrottle(max_failures=3, window=60)
    for t in (0, 1, 2):
        assert throttle.retry_after("a", t) is None
        throttle.failed("a", t)
    assert throttle.retry_after("a", 3) == pytest.approx(57)
    assert throttle.retry_after("b", 3) is None  # other addresses are not affected
    assert throttle.retry_after("a", 60.5) is None  # the first failure left the window


def test_the_throttle_forgets_the_oldest_addresses_first() -> None:
    throttle = AuthThrottle(max_failures=1, window=60, max_addresses=2)
    for address in ("a", "b", "c"):
        throttle.failed(address, 0)
    assert throttle.retry_after("a", 1) is None
    assert throttle.retry_after("c", 1) is not None


def test_the_throttle_withholds_details_but_never_refuses_a_valid_token(tokens: RoomTokens) -> None:
    """Behind one address (an office NAT) a guesser's bad tokens must not lock out its neighbours' good ones."""
    now = [NOW]
    authorizer = JoinAuthorizer(tokens, AuthThrottle(max_failures=2, window=30), lambda: now[0])
    authorize = authorizer.for_client("192.0.2.7")
    good = Join(type="join", room="demo", token=tokens.issue("demo", 60, NOW, name="Ada"))
    bad = Join(type="join", room="demo", token="garbage")
    assert authorize(good) == "Ada"
    for _ in range(2):
        with pytest.raises(SignalingError, match="malformed"):
            authorize(bad)
    with pytest.raises(SignalingError, match="too many failed tokens from your address: details withheld for 30 s"):
        authorize(bad)
    assert authorize(good) == "Ada"  # a valid token always works
    assert authorizer.for_client("192.0.2.8")(good) == "Ada"
    now[0] += 31
    with pytest.raises(SignalingError, match="malformed"):
        authorize(bad)

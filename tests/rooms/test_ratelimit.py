"""The per-connection rate limit: the token bucket, the `rate-limited` reply, and the abuse verdict (pure)."""

from __future__ import annotations

import json

import pytest

from signaling.rooms.ratelimit import ABUSE_STRIKES, MessageRateLimit, TokenBucket


def run(bucket: TokenBucket, times: list[float]) -> str:
    """``+`` for each message allowed at that time, ``-`` for each refused."""
    return "".join("+" if bucket.allow(t) else "-" for t in times)


@pytest.mark.parametrize(
    ("rate", "burst", "times", "expected"),
    [
        pytest.param(10, 3, [0, 0, 0, 0], "+++-", id="burst-then-refused"),
        pytest.param(10, 3, [0, 0, 0, 0.1], "++++", id="one-token-back-after-1/rate"),
        pytest.param(10, 3, [0, 0, 0, 0.05], "+++-", id="half-a-token-is-not-enough"),
        pytest.param(10, 3, [0, 0, 0, 100, 100, 100, 100], "++++++-", id="refill-caps-at-burst"),
        pytest.param(1, 1, [0, 0.5, 1.0, 1.5, 2.0], "+-+-+", id="steady-rate-exactly"),
        pytest.param(2, 1, [0, 0.1, 0.2, 0.3, 0.6], "+---+", id="refused-messages-spend-nothing"),
    ],
)
def test_token_bucket(rate: float, burst: float, times: list[float], expected: str) -> None:
    assert run(TokenBucket(rate, burst, now=0.0), times) == expected


def test_strikes_count_refusals_in_a_row_and_reset_on_success() -> None:
    bucket = TokenBucket(1, 1, now=0.0)
    assert run(bucket, [0, 0, 0, 0]) == "+---"
    assert bucket.strikes == 3
    assert bucket.allow(10.0)
    assert bucket.strikes == 0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_bucket_refuses_nonsense_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)


def refused(limit: MessageRateLimit, text: str) -> str | None:
    assert not limit.admit(0.0)
    return limit.refusal(text)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        pytest.param('{"type":"candidate","id":7}', 7, id="int-id"),
        pytest.param('{"type":"candidate","id":"c-1"}', "c-1", id="str-id"),
        pytest.param('{"type":"candidate"}', None, id="no-id"),
        pytest.param('{"type":"candidate","id":true}', None, id="bool-id-is-not-a-ref"),
        pytest.param('{"id":"' + "x" * 65 + '"}', None, id="over-long-id"),
        pytest.param("not json", None, id="not-json"),
        pytest.param("[1,2]", None, id="not-an-object"),
    ],
)
def test_refusal_is_a_rate_limited_error_with_the_messages_id(text: str, ref: object) -> None:
    limit = MessageRateLimit(rate=5, burst=1, now=0.0)
    assert limit.admit(0.0)
    reply = refused(limit, text)
    assert reply is not None
    expected = {"type": "error", "code": "rate-limited", "message": "over 5 messages/s (burst 1); message dropped"}
    if ref is not None:
        expected["ref"] = ref  # type: ignore[assignment]
    assert json.loads(reply) == expected


def test_persistent_abuse_gets_no_reply_but_the_close_verdict() -> None:
    limit = MessageRateLimit(rate=1, burst=1, now=0.0, abuse_strikes=3)
    assert limit.admit(0.0)
    assert [refused(limit, "{}") is None for _ in range(4)] == [False, False, True, True]


def test_a_pause_forgives_the_strikes() -> None:
    limit = MessageRateLimit(rate=1, burst=1, now=0.0, abuse_strikes=2)
    assert limit.admit(0.0)
    assert refused(limit, "{}") is not None
    assert limit.admit(5.0)  # back under the rate: the run of refusals is over
    assert refused(limit, "{}") is not None


def test_default_abuse_threshold() -> None:
    limit = MessageRateLimit(rate=1, burst=1, now=0.0)
    assert limit.abuse_strikes == ABUSE_STRIKES
    assert limit.admit(0.0)
    replies = [refused(limit, "{}") for _ in range(ABUSE_STRIKES)]
    assert all(r is not None for r in replies[:-1]) and replies[-1] is None

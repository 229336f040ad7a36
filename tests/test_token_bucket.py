"""The one token bucket every layer uses (frames, messages, bytes, connections per address)."""

from __future__ import annotations

import pytest

from signaling.token_bucket import TokenBucket


def run(bucket: TokenBucket, times: list[float], n: float = 1) -> str:
    """``+`` for each take allowed at that time, ``-`` for each refused."""
    return "".join("+" if bucket.take(n, t) else "-" for t in times)


@pytest.mark.parametrize(
    ("rate", "burst", "times", "expected"),
    [
        pytest.param(10, 3, [0, 0, 0, 0], "+++-", id="burst-then-refused"),
        pytest.param(10, 3, [0, 0, 0, 0.1], "++++", id="one-token-back-after-1/rate"),
        pytest.param(10, 3, [0, 0, 0, 0.05], "+++-", id="half-a-token-is-not-enough"),
        pytest.param(10, 3, [0, 0, 0, 100, 100, 100, 100], "++++++-", id="refill-caps-at-burst"),
        pytest.param(1, 1, [0, 0.5, 1.0, 1.5, 2.0], "+-+-+", id="steady-rate-exactly"),
        pytest.param(2, 1, [0, 0.1, 0.2, 0.3, 0.6], "+---+", id="refused-takes-spend-nothing"),
    ],
)
def test_take_one(rate: float, burst: float, times: list[float], expected: str) -> None:
    assert run(TokenBucket(rate, burst, now=0.0), times) == expected


def test_take_many_at_once() -> None:
    bucket = TokenBucket(rate=100, burst=1000, now=0.0)
    assert bucket.take(600, 0.0)
    assert not bucket.take(600, 0.0)  # 400 left: refused whole, nothing spent
    assert bucket.take(400, 0.0)
    assert bucket.wait(100) == pytest.approx(1.0)
    assert bucket.take(100, 1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_refuses_nonsense_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)


def test_available_counts_the_refill_and_spends_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=100, now=0.0)
    assert bucket.take(80, 0.0)
    assert bucket.available(1.0) == 30  # 20 left, 10 refilled
    assert bucket.available(100.0) == 100  # never past the burst
    assert bucket.take(30, 1.0) and not bucket.take(1, 1.0)

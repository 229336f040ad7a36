"""Per-connection limits: messages and bytes, the `rate-limited` reply, the abuse verdict, the time to join."""

from __future__ import annotations

import json
import weakref

import pytest

from signaling.rooms.limits import ABUSE_STRIKES, REF_SCAN_LIMIT, JoinDeadlines, MessageRateLimit

MESSAGE = "over 5 messages/s (burst 1) or 1000 bytes/s (burst 1000); message dropped"


def limit(
    rate: float = 5, burst: float = 1, byte_rate: float = 1000, byte_burst: float = 1000, **kw
) -> MessageRateLimit:
    return MessageRateLimit(rate, burst, byte_rate, byte_burst, 0.0, **kw)


def test_messages_and_bytes_both_limit() -> None:
    by_count = limit(rate=1, burst=2, byte_rate=10**6, byte_burst=10**6)
    assert [by_count.admit(10, 0.0) for _ in range(3)] == [True, True, False]
    by_size = limit(rate=100, burst=100, byte_rate=100, byte_burst=1000)
    assert [by_size.admit(400, 0.0) for _ in range(3)] == [True, True, False]
    assert by_size.admit(200, 0.0)  # what fits in the bytes left still passes
    assert by_size.admit(100, 1.0)  # 100 bytes a second come back


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
        pytest.param("[" * 5000 + "]" * 5000, None, id="nested-5000-deep"),
        pytest.param('{"id":1,"pad":"' + "x" * REF_SCAN_LIMIT + '"}', None, id="too-big-to-scan"),
    ],
)
def test_refusal_is_a_rate_limited_error_with_the_messages_id(text: str, ref: object) -> None:
    lim = limit()
    assert lim.admit(10, 0.0)
    assert not lim.admit(10, 0.0)
    reply = lim.refusal(text, 0.0)
    assert reply is not None
    expected: dict[str, object] = {"type": "error", "code": "rate-limited", "message": MESSAGE}
    if ref is not None:
        expected["ref"] = ref
    assert json.loads(reply) == expected


def test_a_flood_is_abuse_at_once() -> None:
    lim = limit(abuse_strikes=3)
    assert lim.admit(1, 0.0)
    verdicts = [lim.refusal("{}", 0.0) is None for _ in range(4)]
    assert verdicts == [False, False, True, True]


def test_a_little_over_the_rate_only_loses_messages() -> None:
    """Strikes drain at the message rate: 6 messages/s against a limit of 5/s never reaches abuse."""
    lim = limit(rate=5, burst=1, abuse_strikes=3)
    refused = 0
    for i in range(600):  # 100 s at 6 messages/s
        now = i / 6
        if not lim.admit(1, now):
            refused += 1
            assert lim.refusal("{}", now) is not None
    assert refused > 50


def test_the_old_flood_that_slipped_under_the_strike_count_is_caught() -> None:
    """2,000 messages/s at 50/s allowed: one in 40 passes, which used to reset the count of refusals in a row."""
    lim = MessageRateLimit(50, 500, 10**9, 10**9, 0.0)
    closed_at = None
    for i in range(20_000):
        now = i / 2000
        if not lim.admit(1, now) and lim.refusal("{}", now) is None:
            closed_at = now
            break
    assert closed_at is not None and closed_at < 0.5


def test_default_abuse_threshold() -> None:
    lim = MessageRateLimit(1, 1, 10**6, 10**6, 0.0)
    assert lim.abuse_strikes == ABUSE_STRIKES


# ---------------------------------------------------------------------------------------------------------------
# The time to join


def test_join_deadlines_come_due_in_order_each_once() -> None:
    deadlines: JoinDeadlines[str] = JoinDeadlines(timeout=30.0)
    deadlines.add("a", 100.0)
    deadlines.add("b", 105.0)
    deadlines.add("c", 105.0)
    assert deadlines.due(129.9) == []
    assert deadlines.due(130.0) == ["a"]
    assert deadlines.due(134.0) == []
    assert deadlines.due(200.0) == ["b", "c"]
    assert deadlines.due(300.0) == [] and len(deadlines) == 0


class Connection:
    """A stand-in connection whose lifetime a weak reference can watch."""


def test_a_connection_that_went_is_let_go_of_at_once() -> None:
    """Connections that come and go fast must not pile up in memory until their deadlines."""
    deadlines: JoinDeadlines[Connection] = JoinDeadlines(timeout=30.0)
    gone, here = Connection(), Connection()
    watch = weakref.ref(gone)
    deadlines.add(gone, 0.0).cancel()
    deadlines.add(here, 1.0)
    del gone
    assert watch() is None
    assert deadlines.due(31.0) == [here]

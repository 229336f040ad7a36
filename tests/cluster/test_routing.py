"""The Redis router while its node has no link: texts for resumable members wait for the next one, bounded in
bytes (a text may be 64 KiB), the oldest going first."""

from __future__ import annotations

import pytest

from signaling.cluster import routing
from signaling.cluster.routing import RedisRouter
from signaling.rooms.delivery import Deliveries
from signaling.rooms.peers import Member


def test_texts_waiting_for_redis_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "WAITING_BYTES", 1000)
    router = RedisRouter(Deliveries(), kept_count=512, kept_bytes=1 << 20)
    peer = Member("p" * 16, "r", None, None, "", True)
    for n in range(50):
        router.send(peer, '{"type":"message","data":"' + str(n) * 100 + '"}')  # ~100-300 bytes each
    waiting = [head for _, head in router._waiting]
    assert 0 < sum(map(len, waiting)) <= 1000
    assert str(49) * 100 in waiting[-1]  # the newest stay, the oldest went

"""Webhooks over real sockets (README, "Your backend: API and webhooks"), one server: every event checked by the
``standardwebhooks`` library, in order per room, gap-free, no flapping, retried with the same id while the
receiver is down, given up after the retry period. Several nodes: tests/app/test_webhooks_cluster.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from signaling.app.cli import main as cli_main
from signaling.app.settings import Settings
from signaling.app.webhooks import BACKOFF_FIRST, WebhookSender, new_secret, secret_key, sign
from signaling.app.wiring import SignalingApp
from signaling.clients.signaling_client import SignalingClient
from signaling.ws.aio.client import ClientConnection, connect
from signaling.ws.aio.server import WebSocketServer
from tests.app.test_api import KEY, base, call, http, ws
from tests.helpers.webhook_receiver import Receiver, Try, receiving

pytestmark = pytest.mark.timeout(90)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
SECRET = new_secret()
STEP = 5.0


def sender_of(server: WebSocketServer) -> WebhookSender | None:
    assert isinstance(server.app, SignalingApp)
    return server.app.webhooks


def kinds(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["type"], e["data"]["seq"], e["data"].get("peer"), e["data"].get("reason")) for e in events]


def in_order_per_room(receiver: Receiver) -> dict[str, list[int]]:
    """Each room's accepted seqs, in the order they were accepted."""
    rooms: dict[str, list[int]] = defaultdict(list)
    for event in receiver.accepted:
        rooms[event["data"]["room"]].append(event["data"]["seq"])
    return dict(rooms)


async def recv(client: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(STEP):
        message: dict[str, Any] = json.loads(await client.recv())
    return message


async def test_a_rooms_life_reaches_the_backend_signed_and_in_order(start_signaling: ServerFactory) -> None:
    async with receiving(SECRET) as receiver:
        server = await start_signaling(webhook_urls=receiver.url, webhook_secret=SECRET, api_key=KEY)
        async with SignalingClient.connect(ws(server)) as a, SignalingClient.connect(ws(server)) as b, http() as s:
            wa = await a.join("r", name="ann", meta={"plan": "pro"})
            wb = await b.join("r")
            await receiver.until(3)
            status, room, _ = await call(s, "GET", base(server) + "rooms/r")
            assert status == 200 and room["seq"] == 3  # the snapshot reflects the events up to 3
            await b.leave()
            assert (await call(s, "DELETE", base(server) + f"rooms/r/peers/{wa.peer}"))[0] == 204
            events = await receiver.until(6)
        assert kinds(events) == [
            ("room.started", 1, None, None),
            ("peer.joined", 2, wa.peer, None),
            ("peer.joined", 3, wb.peer, None),
            ("peer.left", 4, wb.peer, "left"),
            ("peer.left", 5, wa.peer, "removed"),
            ("room.finished", 6, None, None),
        ]
        assert events[1]["data"] == {"room": "r", "seq": 2, "peer": wa.peer, "name": "ann", "meta": {"plan": "pro"}}
        assert receiver.forged == [] and len(set(receiver.accepted_ids)) == 6
        assert all(e["timestamp"].endswith("Z") for e in events)
        sender = sender_of(server)
        assert sender is not None and sender.sent == 6


async def test_a_drop_that_resumes_in_the_grace_is_no_event(start_signaling: ServerFactory) -> None:
    async with receiving(SECRET) as receiver:
        server = await start_signaling(webhook_urls=receiver.url, webhook_secret=SECRET, resume_grace=30)
        plain = await connect(ws(server))
        await plain.send(json.dumps({"type": "join", "room": "r"}))
        plain_id = (await recv(plain))["peer"]
        first = await connect(ws(server))
        await first.send(json.dumps({"type": "join", "room": "r", "resumable": True}))
        welcome = await recv(first)
        first.abort()  # a drop, not a close: the session waits for its resume
        again = await connect(ws(server))
        await again.send(json.dumps({"type": "join", "room": "r", "resume": welcome["resume"], "last_seq": 0}))
        assert (await recv(again))["resumed"] is True
        await again.send(json.dumps({"type": "leave"}))
        await receiver.until(4)
        plain.abort()  # a plain session's drop ends it
        events = await receiver.until(6)
        assert kinds(events) == [
            ("room.started", 1, None, None),
            ("peer.joined", 2, plain_id, None),
            ("peer.joined", 3, welcome["peer"], None),
            ("peer.left", 4, welcome["peer"], "left"),  # nothing for the drop that resumed
            ("peer.left", 5, plain_id, "dropped"),
            ("room.finished", 6, None, None),
        ]
        await again.close()


async def test_an_expired_grace_is_told_once(start_signaling: ServerFactory) -> None:
    async with receiving(SECRET) as receiver:
        server = await start_signaling(webhook_urls=receiver.url, webhook_secret=SECRET, resume_grace=0.5)
        client = await connect(ws(server))
        await client.send(json.dumps({"type": "join", "room": "r", "resumable": True}))
        peer = (await recv(client))["peer"]
        client.abort()
        events = await receiver.until(4)
        assert kinds(events)[2:] == [("peer.left", 3, peer, "expired"), ("room.finished", 4, None, None)]


async def test_a_receiver_down_for_ten_seconds_gets_every_event_afterwards_in_order_once(
    start_signaling: ServerFactory,
) -> None:
    down_for = 10.0
    async with receiving(SECRET) as receiver:
        first_try: list[float] = []

        def answer(tried: Try) -> int:
            first_try[:] = first_try or [tried.at]
            return 503 if tried.at - first_try[0] < down_for else 204

        receiver.answer = answer
        server = await start_signaling(webhook_urls=receiver.url, webhook_secret=SECRET)
        clients = [await SignalingClient.connect(ws(server)).__aenter__() for _ in range(4)]
        for n, client in enumerate(clients):
            await client.join(f"room-{n % 2}")  # two rooms, each with two peers
        for client in clients:
            await client.leave()
        # Per room: started, 2 joined, 2 left, finished.
        events = await receiver.until(12, within=down_for + 20)
        assert in_order_per_room(receiver) == {"room-0": [1, 2, 3, 4, 5, 6], "room-1": [1, 2, 3, 4, 5, 6]}
        assert len(events) == len(set(receiver.accepted_ids)) == 12  # once each
        assert receiver.forged == []
        # The first event: refused while down, retried with its id, backing off from 0.5 s (doubling, +-10 %).
        head = receiver.accepted_ids[0]
        times = [t.at for t in receiver.tries if t.id == head]
        assert [t.status for t in receiver.tries if t.id == head][-1] == 204
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        expected = [BACKOFF_FIRST * 2**i for i in range(len(gaps))]
        assert len(gaps) >= 5, gaps  # 0.5 + 1 + 2 + 4 < 10 s: at least five refusals, then the 2xx
        for gap, want in zip(gaps, expected, strict=True):
            assert want * 0.9 - 0.05 <= gap <= want * 1.1 + 1.0, (gaps, expected)
        sender = sender_of(server)
        assert sender is not None and sender.retried >= 5 and sender.given_up == 0
        for client in clients:
            await client.close()


async def test_a_receiver_that_is_down_holds_back_its_own_events_only(start_signaling: ServerFactory) -> None:
    async with receiving(SECRET) as up, receiving(SECRET) as down:
        down.answer = lambda _: 503 if len(up.accepted) < 4 else 200  # down until the other got every event
        urls = f"{up.url},{down.url}"
        server = await start_signaling(webhook_urls=urls, webhook_secret=SECRET)
        async with SignalingClient.connect(ws(server)) as client:
            await client.join("r")
            await client.leave()
            events = await up.until(4)
            assert down.accepted == [] and down.tries  # tried, refused, and not in the way
            assert kinds(await down.until(4)) == kinds(events)  # then every event, in order
        assert up.accepted_ids == down.accepted_ids


async def test_an_event_given_up_after_the_retry_period_lets_the_next_one_through(
    start_signaling: ServerFactory,
) -> None:
    async with receiving(SECRET) as receiver:
        receiver.answer = lambda tried: 500 if tried.event["type"] == "room.started" else 200
        server = await start_signaling(webhook_urls=receiver.url, webhook_secret=SECRET, webhook_retry_for=1.0)
        async with SignalingClient.connect(ws(server)) as client:
            await client.join("r")
            (joined,) = await receiver.until(1)
        assert kinds([joined])[0][:2] == ("peer.joined", 2)
        started = [t for t in receiver.tries if t.event["type"] == "room.started"]
        assert len(started) == 2 and {t.id for t in started} == {started[0].id}  # tried at 0 and 0.5 s, then given up
        sender = sender_of(server)
        assert sender is not None and sender.given_up == 1
        async with http() as session:
            _, metrics, _ = await call(session, "GET", f"http://127.0.0.1:{server.port}/metrics", headers={})
        assert 'signaling_webhook_deliveries_total{result="given_up"} 1.0' in metrics
        assert "signaling_webhook_delivery_latency_seconds_count" in metrics


def test_the_webhook_settings_go_together_and_the_secret_is_checked() -> None:
    with pytest.raises(ValueError, match="webhook_secret and webhook_urls go together"):
        Settings.model_validate({"webhook_urls": "http://127.0.0.1:9/x"})
    with pytest.raises(ValueError, match="whsec_"):
        Settings.model_validate({"webhook_urls": "http://127.0.0.1:9/x", "webhook_secret": "not-a-secret"})
    with pytest.raises(ValueError, match="http:// or https://"):
        Settings.model_validate({"webhook_urls": "ftp://example.com/x", "webhook_secret": SECRET})
    settings = Settings.model_validate(
        {"webhook_urls": "http://a.example/x, https://b.example/y", "webhook_secret": SECRET}
    )
    assert settings.webhook_urls == ["http://a.example/x", "https://b.example/y"]


def test_the_cli_prints_a_secret_receivers_accept(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["webhook-secret"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("whsec_") and secret != new_secret()
    body = b'{"type":"room.started","timestamp":"2026-01-01T00:00:00.000Z","data":{"room":"r","seq":1}}'
    stamp = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp)}
    headers["webhook-signature"] = sign(secret_key(secret), "msg_1", stamp, body)
    assert Webhook(secret).verify(body, headers)["data"]["seq"] == 1
    headers["webhook-signature"] = sign(secret_key(new_secret()), "msg_1", stamp, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)

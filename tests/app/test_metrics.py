"""/metrics and /healthz as an operator reads them: labels that stay few whatever clients send, and what a cluster
node knows of its Redis (settings, backlog, how old the cluster's counts are), under an id that names no host."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from signaling.app.metrics import close_code_label
from signaling.cluster.redis_config import REDIS_DEFAULT_PUBSUB, RedisConfig
from signaling.ws.aio.client import connect
from signaling.ws.aio.server import WebSocketServer
from signaling.ws.frames import CloseCode
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(30)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]
STEP = 5.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    async with asyncio.timeout(STEP):
        raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return body


async def scrape(port: int) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families((await get(port, "/metrics")).decode())
        for sample in family.samples
    }


def family(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """One metric's samples by their labels."""
    return {labels: value for (found, labels), value in samples.items() if found == name}


def test_every_code_a_client_may_choose_folds_into_a_few_labels() -> None:
    assert {close_code_label(code) for code in range(3000, 5000)} == {"3xxx", "4xxx", "4001", "4003"}
    assert {close_code_label(code) for code in CloseCode} == {str(code.value) for code in CloseCode}


async def test_clients_closing_with_codes_of_their_choice_add_only_the_bounded_labels(
    start_signaling: ServerFactory,
) -> None:
    server = await start_signaling()
    codes = [3000, 3001, 3999, 4000, 4001, 4002, 4999, 1000]
    for code in codes:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            await ws.close(code)
    await wait_until(lambda: server.stats.closes.total() == len(codes), timeout=STEP)
    assert family(await scrape(server.port), "signaling_closes_total") == {
        (("code", "1000"),): 1,
        (("code", "3xxx"),): 3,
        (("code", "4001"),): 1,  # the server's own (taken over), whoever sent it
        (("code", "4xxx"),): 3,
    }


async def test_a_cluster_nodes_health_and_metrics_show_its_redis_and_no_host(
    start_signaling: ServerFactory, redis_settings: dict[str, str]
) -> None:
    server = await start_signaling(**redis_settings)
    cluster = server.app.cluster  # type: ignore[attr-defined]
    assert await cluster.settle()
    health = json.loads(await get(server.port, "/healthz"))["cluster"]
    assert re.fullmatch(r"n-[0-9a-f]{12}", health["node"]), health["node"]
    assert (health["redis"], health["backlog_bytes"], health["lagging"]) == ("up", 0, False)
    assert health["redis_settings"] == []  # the tests' Redis runs as recommended
    assert 0 <= health["stats_age_s"] < STEP  # the counts beside it are as old as that
    samples = await scrape(server.port)
    assert samples[("signaling_cluster_subscription_backlog_bytes", ())] == 0
    assert samples[("signaling_cluster_lagging", ())] == 0
    assert family(samples, "signaling_cluster_redis_setting_wrong") == {
        (("setting", "client-output-buffer-limit"),): 0,
        (("setting", "maxmemory-policy"),): 0,
    }
    # A Redis that evicts and cuts subscribers early (as a node reads it at its next link):
    cluster.redis_config = RedisConfig("allkeys-lru", REDIS_DEFAULT_PUBSUB)
    health = json.loads(await get(server.port, "/healthz"))["cluster"]
    assert health["redis_settings"] == ["maxmemory-policy", "client-output-buffer-limit"]
    samples = await scrape(server.port)
    assert samples[("signaling_cluster_redis_setting_wrong", (("setting", "maxmemory-policy"),))] == 1
    assert samples[("signaling_cluster_redis_setting_wrong", (("setting", "client-output-buffer-limit"),))] == 1
    cluster.redis_config = RedisConfig(None, None)  # CONFIG refused: nothing known, nothing claimed
    assert json.loads(await get(server.port, "/healthz"))["cluster"]["redis_settings"] is None

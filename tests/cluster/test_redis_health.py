"""What a node tells its operator about its Redis: the settings it depends on (read at each link), its
subscription's backlog (read at each heartbeat) before Redis would cut it, how old the cluster's counts are, and a
node id that names no host (the log maps it). Nodes in the test's process on a real redis-server."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from structlog.testing import capture_logs

from signaling.cluster.redis_config import RECOMMENDED_PUBSUB, OutputLimit, RedisConfig
from signaling.cluster.schema import plain_delivery
from tests.cluster.nodes import Nodes
from tests.helpers.redis import READY, redis_argv
from tests.helpers.server_process import async_running_process
from tests.helpers.wait import wait_until

STEP = 10.0
MiB = 1024 * 1024
OwnRedis = Callable[..., AbstractAsyncContextManager[tuple[Nodes, redis.Redis]]]


@pytest.fixture
def own_redis(tmp_path: Path) -> OwnRedis:
    """``async with own_redis(*extra redis-server args) as (nodes, admin)``: a redis-server for this test alone."""

    @asynccontextmanager
    async def started(*extra: str) -> AsyncIterator[tuple[Nodes, redis.Redis]]:
        argv = [*redis_argv(tmp_path), *extra]
        async with async_running_process(argv, name="redis-health", ready_log=READY) as server:
            nodes = Nodes(f"redis://127.0.0.1:{server.port}/0", "health")
            admin = redis.Redis(port=server.port, decode_responses=True)
            try:
                yield nodes, admin
            finally:
                await nodes.stop()
                await admin.aclose()

    return started


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_a_node_id_names_no_host_and_the_log_maps_it(nodes: Nodes) -> None:
    with capture_logs() as logs:
        node = await nodes.start()
    assert re.fullmatch(r"n-[0-9a-f]{12}", node.node), node.node
    [joined] = events(logs, "cluster_joined")  # the one place the id meets the host and the process
    assert (joined["node"], joined["host"], joined["pid"]) == (node.node, socket.gethostname(), os.getpid())


async def test_the_cluster_counts_say_how_old_they_are(nodes: Nodes) -> None:
    node = await nodes.start()
    assert await node.settle()
    young = node.stats_age()
    assert young is not None and young >= 0
    # They age between heartbeats, and the next one reads them afresh.
    await wait_until(lambda: (node.stats_age() or 0) > young + 0.05, timeout=STEP, message="their age stands still")
    assert await node.settle()
    assert (node.stats_age() or 0) < young + 0.05


async def test_a_redis_run_as_recommended_gives_nothing_to_say(nodes: Nodes) -> None:
    with capture_logs() as logs:
        node = await nodes.start()
        assert await node.settle()
    # The tests' Redis runs as the server recommends (tests/helpers/redis.py).
    assert node.redis_config == RedisConfig("noeviction", RECOMMENDED_PUBSUB)
    assert events(logs, "redis_settings") == [] and events(logs, "redis_settings_unknown") == []
    assert (node.backlog_bytes, node.lagging) == (0, False)


async def test_an_evicting_policy_is_an_error_and_a_small_buffer_a_warning_and_the_node_runs(
    own_redis: OwnRedis,
) -> None:
    misconfigured = ("--maxmemory-policy", "allkeys-lru", "--client-output-buffer-limit", "pubsub 32mb 8mb 60")
    async with own_redis(*misconfigured) as (nodes, _):
        with capture_logs() as logs:
            node = await nodes.start()
        assert node.up
        reported = {(e["setting"], e["log_level"], e["found"], e["set"]) for e in events(logs, "redis_settings")}
        assert reported == {
            ("maxmemory-policy", "error", "allkeys-lru", "noeviction"),
            ("client-output-buffer-limit", "warning", "pubsub 32mb 8mb 60", RECOMMENDED_PUBSUB.config_value()),
        }
        assert [p.setting for p in node.redis_config.problems] == ["maxmemory-policy", "client-output-buffer-limit"]


async def test_without_config_and_client_commands_the_node_runs_and_says_so_once(own_redis: OwnRedis) -> None:
    renamed = ("--rename-command", "CONFIG", "", "--rename-command", "CLIENT", "")  # as managed Redis may
    async with own_redis(*renamed) as (nodes, _):
        with capture_logs() as logs:
            node = await nodes.start()
            assert node.up and node.redis_config == RedisConfig(None, None)
            assert await node.settle()
            assert (node.backlog_bytes, node.lagging) == (None, False)
            assert node._link is not None
            node._link.fail("a test cuts the link")  # the node links again, under a new id
            await asyncio.wait_for(nodes.restored[node].wait(), STEP)
            assert await node.settle()
        assert len(events(logs, "cluster_joined")) == 2
        assert len(events(logs, "redis_settings_unknown")) == 1


async def test_the_backlog_rises_while_the_node_does_not_read_and_lagging_starts_before_the_cut(
    own_redis: OwnRedis,
) -> None:
    small = OutputLimit(RECOMMENDED_PUBSUB.hard, 2 * MiB, 60)  # lagging at 1 MiB, far below the hard limit
    async with own_redis("--client-output-buffer-limit", small.config_value()) as (nodes, admin):
        node = await nodes.start()
        assert node.redis_config.lag_threshold == MiB and node.redis_config.problems == []
        channel = node.names.node_channel(node.node)
        record = plain_delivery(["nobody"], "x" * 65536)  # for no peer here: dropped once read
        seen: list[int] = []
        with capture_logs() as logs:
            async with node.not_reading():
                # Socket buffers fill first (a few MiB on loopback), then Redis holds the rest for the node.
                for _ in range(1024):  # 64 MiB at most: the test fails rather than reach the hard limit
                    await admin.publish(channel, record)
                    assert await node.settle()
                    assert node.backlog_bytes is not None
                    seen.append(node.backlog_bytes)
                    if node.lagging:
                        break
                assert node.lagging, f"no backlog after {len(seen)} records: {seen[-3:]}"
                assert seen[0] < MiB < seen[-1]  # it rose as the records came
            [lagging] = events(logs, "cluster_lagging")
            assert (lagging["log_level"], lagging["threshold"]) == ("warning", MiB)

            async def caught_up() -> bool:
                return await node.settle() and node.backlog_bytes == 0

            await wait_until(caught_up, timeout=STEP, message=lambda: f"backlog left: {node.backlog_bytes}")
        assert (node.lagging, len(events(logs, "cluster_caught_up"))) == (False, 1)
        assert node.up and nodes.lost[node] == []  # never cut

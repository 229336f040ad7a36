"""What a node tells its operator: how old the cluster's counts are, and a node id that names no host (the log maps
it). Nodes in the test's process on a real redis-server."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from structlog.testing import capture_logs

from tests.cluster.nodes import Nodes
from tests.helpers.wait import wait_until

STEP = 10.0


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

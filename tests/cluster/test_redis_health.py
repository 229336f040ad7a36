"""What a node tells its operator: a node id that names no host (the log maps it). Nodes in the test's process on a
real redis-server."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from structlog.testing import capture_logs

from tests.cluster.nodes import Nodes


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_a_node_id_names_no_host_and_the_log_maps_it(nodes: Nodes) -> None:
    with capture_logs() as logs:
        node = await nodes.start()
    assert re.fullmatch(r"n-[0-9a-f]{12}", node.node), node.node
    [joined] = events(logs, "cluster_joined")  # the one place the id meets the host and the process
    assert (joined["node"], joined["host"], joined["pid"]) == (node.node, socket.gethostname(), os.getpid())

"""Shared test helpers (not tests themselves)."""

from tests.helpers.ports import free_port
from tests.helpers.server_process import (
    ARTIFACTS_DIR,
    REPO_ROOT,
    ServerProcess,
    ServerProcessError,
    async_running_process,
    async_running_server,
    running_process,
    running_server,
)

__all__ = [
    "ARTIFACTS_DIR",
    "REPO_ROOT",
    "ServerProcess",
    "ServerProcessError",
    "async_running_process",
    "async_running_server",
    "free_port",
    "running_process",
    "running_server",
]

"""A real redis-server on a free loopback port, started and stopped by the tests (``apt install redis-server``)."""

from __future__ import annotations

from pathlib import Path

from signaling.cluster.redis_config import RECOMMENDED_PUBSUB, REQUIRED_POLICY

__all__ = ["READY", "redis_argv"]

#: What redis-server logs once it serves.
READY = "Ready to accept connections"


def redis_argv(workdir: Path) -> list[str]:
    """Foreground, loopback only, nothing written to disk: a throwaway store ({port} filled in by the runner),
    with the settings the server asks of a production Redis (signaling/cluster/redis_config.py)."""
    return [
        "redis-server",
        "--port",
        "{port}",
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
        "--loglevel",
        "notice",
        "--maxmemory-policy",
        REQUIRED_POLICY,
        "--client-output-buffer-limit",
        RECOMMENDED_PUBSUB.config_value(),
    ]

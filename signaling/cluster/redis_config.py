"""What the cluster needs of its Redis's configuration, and the node's subscription backlog judged against it.

Two settings of Redis decide whether a cluster keeps its promises, and neither shows in the commands that work:

- ``maxmemory-policy`` must be ``noeviction``: any other policy deletes the cluster's state when Redis is full
  (a node's heartbeat has a TTL, so even the ``volatile-*`` ones take it), where ``noeviction`` refuses the write
  and the step that asked is undone.
- ``client-output-buffer-limit`` for the ``pubsub`` class: what a node has not read of its subscription yet,
  Redis buffers; past the limit it cuts the subscription, and the node closes every client.

The recommended values live here; why they are what they are is told to the operator who sets them: README.md,
"Redis settings".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "RECOMMENDED_PUBSUB",
    "REDIS_DEFAULT_PUBSUB",
    "REQUIRED_POLICY",
    "OutputLimit",
    "Problem",
    "RedisConfig",
    "config_value",
    "parse_omem",
    "parse_output_limits",
]

MiB: Final = 1024 * 1024
_LIMITS: Final = "client-output-buffer-limit"

#: The only ``maxmemory-policy`` that never deletes the cluster's state.
REQUIRED_POLICY: Final = "noeviction"


@dataclass(frozen=True)
class OutputLimit:
    """A ``client-output-buffer-limit`` entry, in bytes (0: no limit) and seconds."""

    hard: int
    soft: int
    seconds: int

    def config_value(self, kind: str = "pubsub") -> str:
        """As ``redis-server --client-output-buffer-limit`` and ``CONFIG SET`` take it."""
        return f"{kind} {_size(self.hard)} {_size(self.soft)} {self.seconds}"

    @property
    def lag_threshold(self) -> int:
        """The backlog at which a node counts as lagging: half the soft limit (or of the hard one without a soft
        one), well before Redis cuts it. Without any limit, half the recommended soft limit."""
        limit = self.soft or self.hard
        return limit // 2 if limit else RECOMMENDED_PUBSUB.lag_threshold


#: What this server recommends (README.md, "Redis settings", says why), and the tests and deploy files run with.
RECOMMENDED_PUBSUB: Final = OutputLimit(hard=256 * MiB, soft=64 * MiB, seconds=60)
#: Redis's own default: what a node assumes when it cannot read the setting.
REDIS_DEFAULT_PUBSUB: Final = OutputLimit(hard=32 * MiB, soft=8 * MiB, seconds=60)


@dataclass(frozen=True)
class Problem:
    """A setting of Redis that puts the cluster at risk: what it is, what to set, and why."""

    setting: str
    found: str
    want: str
    why: str
    #: An error costs state (an evicting policy); a warning costs clients (a cut subscription).
    severity: Literal["error", "warning"]


@dataclass(frozen=True)
class RedisConfig:
    """The settings a node read from its Redis (None: CONFIG GET was refused, or does not know the setting)."""

    policy: str | None
    pubsub: OutputLimit | None

    @property
    def checked(self) -> list[str]:
        """The settings that could be read."""
        read = (("maxmemory-policy", self.policy), (_LIMITS, self.pubsub))
        return [name for name, value in read if value is not None]

    @property
    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        if self.policy is not None and self.policy != REQUIRED_POLICY:
            found.append(
                Problem(
                    "maxmemory-policy",
                    self.policy,
                    REQUIRED_POLICY,
                    "an evicting policy deletes rooms, members and heartbeats when Redis is full",
                    "error",
                )
            )
        pubsub = self.pubsub
        if pubsub is not None and pubsub.hard and pubsub.hard < RECOMMENDED_PUBSUB.hard:
            found.append(
                Problem(
                    _LIMITS,
                    pubsub.config_value(),
                    RECOMMENDED_PUBSUB.config_value(),
                    "Redis cuts a node's subscription past the hard limit, and the node closes all its clients",
                    "warning",
                )
            )
        return found

    @property
    def lag_threshold(self) -> int:
        return (self.pubsub or REDIS_DEFAULT_PUBSUB).lag_threshold


_UNITS = {"k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
_SIZE = re.compile(r"(\d+)([a-z]*)")


def _bytes(text: str) -> int:
    """A Redis memory size (``33554432``, ``32mb``, ``1gb``) in bytes."""
    match = _SIZE.fullmatch(text.lower())
    if match is None or match[2] not in ("", *_UNITS):
        raise ValueError(f"not a memory size: {text!r}")
    return int(match[1]) * _UNITS.get(match[2], 1)


def _size(count: int) -> str:
    return f"{count // MiB}mb" if count and count % MiB == 0 else str(count)


def parse_output_limits(value: str, kind: str = "pubsub") -> OutputLimit | None:
    """The ``kind`` entry of a ``client-output-buffer-limit`` value (``normal 0 0 0 slave ... pubsub 33554432
    8388608 60``), or None when it has none or cannot be read."""
    words = value.split()
    for i in range(0, len(words) - 3, 4):
        if words[i].lower() == kind:
            try:
                return OutputLimit(_bytes(words[i + 1]), _bytes(words[i + 2]), int(words[i + 3]))
            except ValueError:
                return None
    return None


def config_value(reply: Any, name: str) -> str | None:
    """One setting from a ``CONFIG GET`` reply (a map in RESP3, name-value pairs in RESP2); None when Redis does
    not know it."""
    if isinstance(reply, dict):
        value = reply.get(name)
    else:
        pairs = list(reply)
        value = dict(zip(pairs[::2], pairs[1::2], strict=True)).get(name)
    return None if value is None else str(value)


_OMEM = re.compile(r"(?:^|\s)omem=(\d+)")


def parse_omem(client_list: str) -> int | None:
    """A client's output buffer (bytes) from its ``CLIENT LIST`` line; None when it is not there (gone)."""
    match = _OMEM.search(client_list)
    return int(match[1]) if match else None

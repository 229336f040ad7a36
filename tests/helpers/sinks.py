"""A real in-memory PeerSink for domain tests: the transport's role, without a socket."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["RecordingSink"]


class RecordingSink:
    """Keeps every text delivered, in order."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def deliver(self, text: str) -> None:
        self.texts.append(text)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(t) for t in self.texts]

    def take(self) -> list[dict[str, Any]]:
        """The messages delivered since the last take()."""
        out = self.messages
        self.texts.clear()
        return out

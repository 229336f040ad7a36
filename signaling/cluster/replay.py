"""The replay store of a cluster: the kept messages of resumable sessions, in Redis.

Numbering and keeping happen in Redis, in the same step that routes a text (``signaling_deliver``, through the
router); starting and dropping a session's messages come with its join and its leave (library.lua). What is left
here is reading them back for a resume.
"""

from __future__ import annotations

from signaling.rooms.directory import unavailable
from signaling.rooms.replay import ReplayStore

from .link import RedisLink, Unavailable

__all__ = ["RedisReplay"]


class RedisReplay(ReplayStore):
    """Reads through the node's link (``link_up``); without one it is unavailable."""

    waits = True

    def __init__(self, *, kept_count: int, kept_bytes: int) -> None:
        super().__init__(kept_count=kept_count, kept_bytes=kept_bytes)
        self._link: RedisLink | None = None

    def link_up(self, link: RedisLink) -> None:
        self._link = link

    def link_down(self) -> None:
        self._link = None

    def start(self, peer: str) -> None:
        """Nothing to do: ``signaling_join`` starts the numbering of a resumable member."""

    async def after(self, peer: str, last_seq: int) -> list[str] | None:
        link = self._link
        if link is None:
            raise unavailable()
        try:
            reply = await link.fcall("signaling_kept", peer, last_seq)
        except Unavailable:
            raise unavailable() from None
        return list(reply[1:]) if reply[0] == "ok" else None

    def forget(self, peer: str) -> None:
        """Nothing to do: leaving the room in Redis dropped what was kept."""

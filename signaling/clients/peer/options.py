"""``PeerOptions``: what ``signaling peer`` was asked to do, shared by the command line, the media and the run loop."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PeerOptions"]


@dataclass
class PeerOptions:
    """What ``signaling peer`` was asked to do (the parsed command line)."""

    url: str
    room: str
    name: str | None = "aiortc-peer"
    play: str | None = None
    loop: bool = False
    record: str | None = None
    echo: bool = False
    host_addresses: list[str] = field(default_factory=list)
    duration: float | None = None
    hello_interval: float = 0.0
    stats_interval: float = 1.0
    video_size: tuple[int, int] = (320, 240)
    fps: float = 15.0
    tone: float = 440.0
    cafile: str | None = None
    token: str | None = None
    relay_only: bool = False

    @property
    def urls(self) -> list[str]:
        """``url`` may list several nodes, comma-separated."""
        return [part.strip() for part in self.url.split(",") if part.strip()]

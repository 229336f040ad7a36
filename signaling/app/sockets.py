"""What every protocol's WebSocket on this server shares: the native one's, PeerJS's and y-webrtc's.

Each is its session's sink (``deliver``: the connection's own send, no call in between), the connection its
driver pauses and fails, and the holder of the connection's message limit, which pays for a broadcast's further
copies (the session's byte budget) and decides, with the abuse policy, what a message past it gets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from signaling.rooms.limits import MessageRateLimit
from signaling.ws.aio.server import ServerConnection
from signaling.ws.frames import CloseCode

if TYPE_CHECKING:
    from .wiring import SignalingApp

__all__ = ["ProtocolSocket"]

log = structlog.get_logger("signaling")


class ProtocolSocket:
    """The shared part of a protocol's socket; subclasses add their session, driver and handler callbacks."""

    __slots__ = ("_app", "_client", "_limit", "deliver", "ws")

    def __init__(self, app: SignalingApp, client: str, ws: ServerConnection) -> None:
        self._app = app
        self._client = client
        self.ws = ws
        #: PeerSink.deliver: the connection's own send, no call in between (once per message per recipient).
        self.deliver: Callable[[str], None] = ws.send_text
        ws.client_address = client
        s = app.settings
        self._limit = MessageRateLimit(
            s.rate_limit,
            s.rate_burst,
            s.rate_limit_bytes,
            s.rate_burst_bytes,
            app.clock(),
            abuse_strikes=s.abuse_strikes,
        )

    @property
    def client(self) -> str:
        return self._client

    # The session's budget: what a broadcast's further copies (and a y-webrtc subscribe's topics) cost
    def spend(self, size: int) -> bool:
        return self._limit.spend(size, self._app.clock())

    def affords(self, size: int) -> bool:
        return self._limit.affords(size, self._app.clock())

    def spend_messages(self, count: int) -> bool:
        return self._limit.spend_messages(count, self._app.clock())

    # The driver's connection
    def pause_reading(self) -> None:
        self.ws.pause_reading()

    def resume_reading(self) -> None:
        self.ws.resume_reading()

    def step_failed(self) -> None:
        self.ws.fail(CloseCode.INTERNAL_ERROR, "internal server error")

    def refuse(self, text: str, now: float, errors: Counter[str] | None, **context: object) -> None:
        """A message past the connection's rate (``MessageRateLimit.admit`` said no, on the caller's hot path):
        answered ``rate-limited`` (counted in ``errors``; None: a protocol with no such answer drops it), or, once
        the strikes reach the abuse limit, the connection closed (1008)."""
        self._app.rate_limited += 1
        reply = self._limit.refusal(text, now)
        if reply is None:
            log.warning("abuse_closed", conn=self.ws.id, client=self._client, **context)
            self.ws.close(CloseCode.POLICY_VIOLATION, "persistent rate limit abuse")
        elif errors is not None:
            errors["rate-limited"] += 1
            self.ws.send_text(reply)

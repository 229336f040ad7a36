"""A WebRTC signaling server on a hand-written RFC 6455 transport."""

__version__ = "0.2.0"

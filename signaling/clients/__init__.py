"""Clients of the signaling server, on the project's own transport: the Python client and the aiortc peer."""

from .signaling_client import SignalingClient, SignalingClientError, SignalingErrorReply, UnexpectedMessage

__all__ = ["SignalingClient", "SignalingClientError", "SignalingErrorReply", "UnexpectedMessage"]

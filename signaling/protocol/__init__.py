"""The wire contract of the signaling protocol: message models, error codes, parsing, serializing, JSON Schema.

Pure data and functions: nothing here knows about sockets, rooms or the transport. Clients import the message
models from here (``from signaling.protocol import PeerJoined``).
"""

from . import models
from .errors import ErrorCode, Ref, SignalingError
from .models import *  # noqa: F403  (every message model: models.__all__)
from .parse import parse_client_message, parse_server_message

__all__ = ["ErrorCode", "Ref", "SignalingError", "parse_client_message", "parse_server_message"]
__all__ += models.__all__

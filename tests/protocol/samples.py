"""Sample values shared by the protocol tests."""

from __future__ import annotations

import json
from typing import Any

from signaling.protocol.models import IceCandidate

CAND: IceCandidate = {
    "candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}
CAND_UFRAG_NULL: IceCandidate = {**CAND, "usernameFragment": None}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))

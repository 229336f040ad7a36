"""Cost of Session.handle_text per relayed message (domain only: no sockets, a list as the sink).

Run: python -m bench.profile_session [--number N]. Prints microseconds per call, best of 5 repeats.
"""

from __future__ import annotations

import functools
import json
import logging
import timeit

import structlog

from bench import common
from signaling.rooms.backends import in_memory
from signaling.rooms.driver import run_inline
from signaling.rooms.session import Session

CANDIDATE = {
    "candidate": "candidate:842163049 1 udp 1677729535 203.0.113.45 51234 typ srflx raddr 192.168.1.20 "
    "rport 51234 generation 0 ufrag Ab3d network-cost 999",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "Ab3d",
}
SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "a=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
) * 12


class ListSink:
    """Keeps only the last text, so memory stays flat over a million calls."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = ""

    def deliver(self, text: str) -> None:
        self.last = text

    def taken_over(self) -> None:
        pass

    def removed(self) -> None:
        pass


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--number", type=int, default=100_000)
    args = parser.parse_args()
    # Client errors are logged at info; keep the timing loop quiet (and realistic for a production level).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    backends = in_memory()
    sinks = [ListSink() for _ in range(4)]
    sessions = [Session(backends, sink) for sink in sinks]
    for session in sessions:
        step = session.handle_text('{"type":"join","room":"bench"}')
        assert step is not None
        run_inline(step)
    a, b = sessions[0], sessions[1]
    assert b.peer is not None
    to = b.peer

    def compact(obj: object) -> str:
        return json.dumps(obj, separators=(",", ":"))

    cases: dict[str, str] = {
        "candidate": compact({"type": "candidate", "to": to, "candidate": CANDIDATE}),
        "candidate null": compact({"type": "candidate", "to": to, "candidate": None}),
        f"offer ({len(SDP)} B sdp)": compact({"type": "offer", "to": to, "sdp": SDP}),
        "message to one": compact({"type": "message", "to": to, "data": {"chat": "hello", "n": 1}}),
        "message broadcast (3)": compact({"type": "message", "data": {"chat": "hello", "n": 1}}),
        "ping": '{"type":"ping"}',
        "unknown-peer error": compact({"type": "candidate", "to": "nobody", "candidate": CANDIDATE}),
    }
    for name, text in cases.items():
        call = functools.partial(a.handle_text, text)
        call()
        best = min(timeit.repeat(call, number=args.number, repeat=5)) / args.number
        print(f"{name:28s} {len(text):6d} B  {best * 1e6:6.2f} us")
    print("last delivered:", sinks[1].last[:100])


if __name__ == "__main__":
    main()

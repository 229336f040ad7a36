"""`signaling peer`: a headless aiortc WebRTC peer that joins a room and connects to everyone there.

It is the project's reference peer: a test tool (it logs machine-readable progress), a load and interop
partner for browsers, and an example of driving aiortc through the signaling protocol.

Modules, from the command line down (each one's docstring holds the design notes for its part):

* :mod:`.command`: the ``signaling peer`` parser and ``main()``, which says so when aiortc is not installed.
* :mod:`.options`: ``PeerOptions``, what the command line asked for.
* :mod:`.runner`: ``Peer``, the run loop (join, one link per remote peer, shutdown), and ``run_peer``.
* :mod:`.link`: ``Link``, one RTCPeerConnection per remote peer, with perfect negotiation adapted to aiortc; a
  ``LinkContext`` carries all it takes from its peer.
* :mod:`.media`: what a peer sends (test pattern, tone, a file) and what it does with what it receives.
* :mod:`.sdp`: SDP and ICE helpers.

aiortc is an optional extra: every module imports without it and loads aiortc only where it is used.
"""

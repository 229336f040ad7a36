"""Other signaling protocols served from this server (PeerJS, y-webrtc, WHIP/WHEP), mapped onto the room layer.

One module or subpackage per protocol, each mapping it onto rooms, members and routing, so that the limits,
metrics, cluster mode, server API and webhooks apply to its clients as to native ones. Their pure parts know no
sockets or event loop: signaling/app/ wires them to the transport. Their own rooms (a PeerJS key, a y-webrtc
topic) carry ``rooms.peers.FOREIGN_MARK``, so they never mix with the native protocol's.
"""

"""Other signaling protocols served from this server, mapped onto the room layer (signaling/rooms/).

One subpackage per protocol. Its pure parts know no sockets or event loop: the app layer (signaling/app/) wires
them to the transport. Their rooms and peer ids carry ``rooms.peers.FOREIGN_MARK``, so they never mix with the
native protocol's.
"""

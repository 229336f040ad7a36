"""The PeerJS server protocol (peers/peerjs-server), on the room layer: a PeerJS ``key`` is a room, its ids the
room's members, so limits, metrics, the server API and cluster mode apply to PeerJS peers as to native ones.

- ``wire.py``: the messages, as the PeerJS client sends and expects them, and the ids and keys accepted.
- ``session.py``: ``PeerJSSession``, one connection: its id taken (or taken over with the same token), relays,
  the queue for peers not connected yet and its ``EXPIRE``.
"""

"""Foreign signaling protocols mapped onto the room layer: their pure parts (no sockets, no asyncio).

Each protocol is one module here; signaling/app/ wires it to the transport and to the rooms.
"""

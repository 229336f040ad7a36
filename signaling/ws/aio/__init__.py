"""The asyncio side of the transport: the only place in signaling.ws that touches sockets, loops and clocks."""

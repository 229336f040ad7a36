"""The asyncio side of the transport: the only part of signaling.ws with sockets, loops and clocks."""

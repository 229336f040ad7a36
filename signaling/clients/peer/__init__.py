"""`signaling peer`: a headless aiortc WebRTC peer that joins a room and connects to everyone there."""

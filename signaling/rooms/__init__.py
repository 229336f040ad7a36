"""The signaling domain: who is in which room (directory), handing texts to members (bus), one session per
connection, rate limits, access.

Knows nothing of sockets or the transport: sessions write texts to a PeerSink, and the clock is passed in. The
in-memory directory and bus serve one process; signaling.cluster has Redis ones for several.
"""

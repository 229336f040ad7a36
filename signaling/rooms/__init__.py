"""The signaling domain: who is in which room (directory), where texts go (routing), what resumed sessions are
replayed (replay), this process's connections (delivery), one session per connection and its driver, limits,
access.

Knows nothing of sockets or the transport: sessions write texts to a PeerSink, and the clock is passed in. The
in-memory backends serve one process (backends.in_memory); signaling.cluster has Redis ones for several.
"""

"""The signaling domain: rooms and relay (hub), one session per connection, rate limits.

Knows nothing of sockets or the transport: sessions write texts to a PeerSink, and the clock is passed in.
"""

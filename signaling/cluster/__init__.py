"""Several server processes sharing rooms through Redis: the Redis room directory, router and replay store, and a
node's life in the cluster (heartbeat, drain, Redis going away). Above the domain (signaling.rooms), beside nothing
of the transport."""

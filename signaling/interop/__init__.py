"""Other signaling protocols served on the same room layer: each module maps one onto rooms, members and routing,
so that the limits, metrics, cluster mode and server API apply to its clients as to native ones. Pure where it
can be: no sockets, no event loop (signaling/app/ wires each to the transport and to the rooms)."""

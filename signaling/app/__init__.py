"""The server process: wiring the domain to the transport, HTTP routes, settings, CLI, logs, TLS, echo mode."""

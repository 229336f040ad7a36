"""TLS for wss:// and https://, with certificates reloaded without a restart.

``load_cert_chain`` on the live SSLContext swaps the certificate for every handshake that starts afterwards,
while connections already up keep the one they negotiated. Reloads happen on SIGHUP or when either file's
modification time changes; a half-written or broken pair is refused and the old certificate stays.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import structlog

__all__ = ["CertReloader"]

log = structlog.get_logger("signaling.tls")


class CertReloader:
    def __init__(self, certfile: Path, keyfile: Path) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["http/1.1"])
        self._stamp = self._read_stamp()
        #: The files' stamp when a reload last failed: not retried (nor logged again) until they change again.
        self._failed_stamp: tuple[int, int, int, int] | None = None
        self.context.load_cert_chain(certfile, keyfile)
        self.reloads = 0

    def _read_stamp(self) -> tuple[int, int, int, int]:
        c = os.stat(self.certfile)
        k = os.stat(self.keyfile)
        return (c.st_mtime_ns, c.st_size, k.st_mtime_ns, k.st_size)

    def reload(self) -> bool:
        """Load the files again. Returns False (keeping the old certificate) when they do not load."""
        stamp = None
        try:
            stamp = self._read_stamp()
            # Validate in a scratch context first: a failed load must not leave the live one half-changed.
            probe = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            probe.load_cert_chain(self.certfile, self.keyfile)
            self.context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            log.error("tls_reload_failed", certfile=str(self.certfile), error=str(exc))
            self._failed_stamp = stamp
            return False
        self._stamp = stamp
        self._failed_stamp = None
        self.reloads += 1
        log.info("tls_reloaded", certfile=str(self.certfile), reloads=self.reloads)
        return True

    def maybe_reload(self) -> bool:
        """Reload when either file changed since the last load."""
        try:
            stamp = self._read_stamp()
        except OSError:
            return False
        if stamp == self._stamp or stamp == self._failed_stamp:
            return False
        return self.reload()

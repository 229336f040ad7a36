"""Throwaway self-signed certificates for TLS tests, made with the ``openssl`` command line tool.

Each certificate is valid for 127.0.0.1 and localhost (subjectAltName), so a client can verify it with
``check_hostname`` on, trusting exactly that certificate (it is its own CA).
"""

from __future__ import annotations

import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CertPair", "client_context", "install", "make_cert", "server_context"]


@dataclass(frozen=True)
class CertPair:
    certfile: Path
    keyfile: Path
    common_name: str

    @property
    def pem(self) -> str:
        return self.certfile.read_text()

    @property
    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.pem)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this certificate."""
        return client_context(self)


def make_cert(directory: Path, common_name: str, *, serial: int = 1) -> CertPair:
    """A new EC key and a self-signed certificate for 127.0.0.1/localhost in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    certfile = directory / f"{common_name}.crt"
    keyfile = directory / f"{common_name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(keyfile),
            "-out",
            str(certfile),
            "-days",
            "2",
            "-subj",
            f"/CN={common_name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
            "-set_serial",
            str(serial),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return CertPair(certfile, keyfile, common_name)


def install(pair: CertPair, certfile: Path, keyfile: Path) -> None:
    """Put ``pair`` at ``certfile``/``keyfile``, each file replaced atomically (rename), the key first."""
    for src, dst in ((pair.keyfile, keyfile), (pair.certfile, certfile)):
        tmp = dst.with_name(dst.name + ".tmp")
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)


def client_context(*pairs: CertPair) -> ssl.SSLContext:
    """A client context that trusts exactly these certificates (hostname checks stay on)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    for pair in pairs:
        ctx.load_verify_locations(cadata=pair.pem)
    return ctx


def server_context(pair: CertPair) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pair.certfile, pair.keyfile)
    return ctx

"""Whether this process runs in a loopback-only network namespace (what `make test` gives the suite)."""

from __future__ import annotations

import errno
import fcntl
import socket
import struct

__all__ = ["interface_flags", "loopback_only_problem"]

_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


def interface_flags() -> dict[str, int]:
    """Interface name -> IFF_* flags, for the network namespace this process is in.

    Not /sys/class/net: sysfs shows the namespace it was mounted in, so under a bare ``unshare -n`` it still
    lists the host's interfaces. if_nameindex() and the SIOCGIFFLAGS ioctl ask the kernel about ours.
    """
    flags: dict[str, int] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("16s24x", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request)
            except OSError as exc:
                if exc.errno == errno.ENODEV:  # vanished meanwhile
                    continue
                raise
            flags[name] = struct.unpack_from("H", answer, 16)[0]
    return flags


def loopback_only_problem() -> str | None:
    """Why this is not a loopback-only network namespace, or None when it is."""
    flags = interface_flags()
    others = sorted(name for name, f in flags.items() if f & _IFF_UP and not f & _IFF_LOOPBACK)
    if others:
        return f"non-loopback network interfaces are up: {', '.join(others)}"
    if not any(f & _IFF_UP and f & _IFF_LOOPBACK for f in flags.values()):
        return "no loopback interface is up (run `ip link set lo up` inside the namespace)"
    return None

"""Free TCP ports, and whether the process that listens on one is the one a test started (Linux /proc)."""

from __future__ import annotations

import os
import socket

__all__ = ["free_port", "listener_owned_by"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that is free right now (the kernel's pick; callers retry on a bind race)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on TCP `port` (Linux /proc), or None if that cannot be known."""
    inodes: set[str] = set()
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes if found_table else None


def _socket_inodes_of_group(pgid: int) -> set[str]:
    """Socket inodes held by the processes of process group `pgid` (our child and anything it spawned)."""
    inodes: set[str] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:  # field 5: pgrp
                continue
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except (OSError, ValueError, IndexError):
            continue
    return inodes


def listener_owned_by(port: int, pgid: int) -> bool | None:
    """Whether the listener on `port` belongs to process group `pgid`; None when /proc cannot tell."""
    listening = _listening_inodes(port)
    if not listening:
        return None
    return bool(listening & _socket_inodes_of_group(pgid))

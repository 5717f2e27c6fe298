"""
The port a process under test bound itself (given port 0), read from /proc:
no port is guessed, so no other process can be talked to by mistake.
"""

from __future__ import annotations

import os
import time

__all__ = ["listening_port_of"]


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _listening(inodes: set[str]) -> list[int]:
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening_port_of(pid: int, timeout: float = 10) -> int:
    """The one TCP port ``pid`` listens on, once it does; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ports = _listening(_socket_inodes(pid))
        if ports:
            assert len(ports) == 1, f"pid {pid} listens on {ports}"
            return ports[0]
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} listens on no TCP port after {timeout}s")

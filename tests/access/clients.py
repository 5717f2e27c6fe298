"""Real-socket clients and configuration text for the access integration tests
(tests/integration/test_access_*.py)."""

from __future__ import annotations

import socket
from pathlib import Path

__all__ = ["daytime_block", "fetch", "hosts_args", "open_from"]


def block(name: str, id_: str, *, kind: str = "stream", extra: str = "") -> str:
    """A service block on 127.0.0.1, port 0, logging FAIL/START with the host."""
    wait = "no" if kind == "stream" else "yes"
    return (
        f"service {name}\n{{\n"
        f"\tid             = {id_}\n"
        f"\ttype           = INTERNAL UNLISTED\n"
        f"\tsocket_type    = {kind}\n"
        f"\twait           = {wait}\n"
        f"\tport           = 0\n"
        f"\tbind           = 127.0.0.1\n"
        f"\tlog_on_success = HOST\n"
        f"\tlog_on_failure = HOST\n"
        f"{extra}"
        f"}}\n")


def daytime_block(id_: str, extra: str = "") -> str:
    """A daytime TCP service (answers and closes: easy to tell served from refused)."""
    return block("daytime", id_, extra=extra)


def hosts_args(directory: Path) -> tuple[str, ...]:
    """Command-line options pointing superd at test hosts.allow/deny files."""
    return ("--hosts-allow", str(directory / "hosts.allow"),
            "--hosts-deny", str(directory / "hosts.deny"))


def open_from(source: str, port: int, timeout: float = 5) -> socket.socket:
    """A TCP connection to 127.0.0.1:port from ``source``."""
    return socket.create_connection(("127.0.0.1", port), timeout,
                                    source_address=(source, 0))


def fetch(source: str, port: int, timeout: float = 5) -> bytes | None:
    """Everything the service sends before closing; None if reset."""
    with open_from(source, port, timeout) as s:
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except ConnectionResetError:
            return None
    return data


def udp_ask(source: str, port: int, payload: bytes = b"ping",
            timeout: float = 1.0) -> bytes | None:
    """One datagram to 127.0.0.1:port from ``source``; the reply or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(4096)
        except (TimeoutError, ConnectionRefusedError):
            return None

"""Helpers for the reload and status integration tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from tests.integration.harness import Superd


def echo_block(service_id: str, *, bind: str = "127.0.0.1", port: int = 0,
               extra: str = "") -> str:
    """An UNLISTED echo service without a cps limit."""
    lines = [
        "service echo", "{",
        f"\tid          = {service_id}",
        "\ttype        = INTERNAL UNLISTED",
        "\tsocket_type = stream",
        "\twait        = no",
        f"\tport        = {port}",
        f"\tbind        = {bind}",
        "\tcps         = 0 0",
        *(f"\t{line.strip()}" for line in extra.strip().splitlines() if line.strip()),
        "}",
    ]
    return "\n".join(lines) + "\n"


def reloads_done(superd: Superd) -> list[dict[str, Any]]:
    """Every finished reload (ok or not), in order."""
    return [e for e in superd.events()
            if e.get("event") == "reload" and e.get("phase") == "done"]


def reload_and_wait(superd: Superd, timeout: float = 15) -> dict[str, Any]:
    """SIGHUP, then the ``reload`` event that says how it ended."""
    before = len(reloads_done(superd))
    superd.reload()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = reloads_done(superd)
        if len(done) > before:
            return done[before]
        time.sleep(0.02)
    raise AssertionError(f"no reload result within {timeout}s:\n{superd.stderr()}")


def latest_port(superd: Superd, service_id: str, proto: str = "tcp",
                host: str | None = None) -> int:
    """The port of the most recent ``listening`` event of a service."""
    for event in reversed(superd.events()):
        if (event.get("event") == "listening" and event.get("service_id") == service_id
                and event.get("protocol") == proto
                and (host is None or event.get("host") == host)):
            return int(event["port"])
    raise KeyError(service_id)


def echo_once(host: str, port: int, source: str | None = None,
              timeout: float = 5) -> bytes:
    """One echo exchange; returns what came back (raises on refusal or reset)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        if source is not None:
            sock.bind((source, 0))
        sock.connect((host, port))
        sock.sendall(b"ping\n")
        data = b""
        while len(data) < 5:
            chunk = sock.recv(64)
            if not chunk:
                break
            data += chunk
        return data


def refused(host: str, port: int, source: str | None = None) -> bool:
    """True when a connection is refused or closed without an answer."""
    try:
        return echo_once(host, port, source, timeout=3) == b""
    except (ConnectionRefusedError, ConnectionResetError):
        return True


class Hammer(threading.Thread):
    """Echo exchanges with one service, back to back, until stopped."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.ok = 0
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                answer = echo_once(self.host, self.port)
            except OSError as e:
                self.failures.append(repr(e))
                continue
            if answer == b"ping\n":
                self.ok += 1
            else:
                self.failures.append(f"answer {answer!r}")

    def finish(self) -> None:
        self._stop_event.set()
        self.join(10)

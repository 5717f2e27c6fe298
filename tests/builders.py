"""ServiceConfig builders shared by the unit tests of the daemon's top level."""

from __future__ import annotations

from typing import Any

from superd.config.model import Location, ServiceConfig, SocketType

__all__ = ["echo_service", "local_echo_service"]


def echo_service(**changes: Any) -> ServiceConfig:
    """A ``wait = no`` TCP service ``echo`` on port 10007, with ``changes``."""
    values: dict[str, Any] = dict(
        name="echo", id="echo", location=Location("conf/echo", 1),
        socket_type=SocketType.STREAM, protocol="tcp", wait=False, port=10007,
    )
    values.update(changes)
    return ServiceConfig(**values)


def local_echo_service(**changes: Any) -> ServiceConfig:
    """``echo_service`` as the builtin, UNLISTED, bound to 127.0.0.1."""
    values: dict[str, Any] = dict(
        bind=("127.0.0.1",), type=frozenset({"INTERNAL", "UNLISTED"}))
    values.update(changes)
    return echo_service(**values)

"""Tests for superd.daemon.plan with UNIX sockets: the path is the identity, not the mode."""

from __future__ import annotations

import attrs

from superd.config.model import Configuration, ServiceConfig, UnixSocket
from superd.daemon.plan import plan_reload, service_key
from tests.builders import local_echo_service


def unix(path: str = "/run/echo.sock", mode: int = 0o666) -> ServiceConfig:
    return local_echo_service(unix=UnixSocket(path, mode), protocol="unix", port=None,
                              bind=())


def test_same_path_keeps_the_socket_whatever_its_mode_and_owner() -> None:
    """A new socket_mode, socket_owner or only_uid changes the service; its
    socket (and file) is kept."""
    old = unix()
    for new in (unix(mode=0o600),
                attrs.evolve(old, unix=UnixSocket("/run/echo.sock", 0o666, 0, 0)),
                attrs.evolve(old, only_uid=frozenset({0}))):
        assert service_key(new) == service_key(old)
        plan = plan_reload(Configuration((old,)), Configuration((new,)))
        assert plan.changed == ((old, new),)


def test_another_path_binds_anew() -> None:
    """A new path is a new socket: the old is dropped, the new added."""
    old, new = unix(), unix("/run/other.sock")
    assert service_key(new) != service_key(old)
    plan = plan_reload(Configuration((old,)), Configuration((new,)))
    assert (plan.added, plan.dropped) == ((new,), (old,))

"""Builders shared by the spawn unit tests."""

from __future__ import annotations

import socket
from typing import Any

import attrs
from twisted.internet import tcp
from twisted.internet.testing import MemoryReactorClock

from superd.config.model import Location, ServiceConfig, SocketType
from superd.core.runtime import Runtime, RuntimeOptions
from superd.daemon.parts import Parts
from superd.proc.credentials import Identity
from tests.fakes import ROOT, FakeProcessReactor, FakeSpawner, fake_processes, make_parts


def external_service(**changes: Any) -> ServiceConfig:
    """A wait=no TCP service running /usr/sbin/sshd -i, with ``changes``."""
    base = ServiceConfig(
        name="ssh", id="ssh", location=Location("conf/ssh", 1),
        socket_type=SocketType.STREAM, protocol="tcp", wait=False, port=22,
        server="/usr/sbin/sshd", server_args=("-i",),
        log_on_success=frozenset({"PID", "HOST", "EXIT", "DURATION"}),
        log_on_failure=frozenset({"HOST"}),
    )
    return attrs.evolve(base, **changes)


def fake_parts(identity: Identity = ROOT,
               environ: Any = None) -> "tuple[Parts, FakeSpawner]":
    """The daemon's parts on a FakeProcessReactor with a FakeSpawner process table."""
    runtime = Runtime(FakeProcessReactor(), RuntimeOptions(grace=5.0))
    processes, spawner = fake_processes(runtime.reactor, identity, environ)
    return make_parts(runtime, processes=processes), spawner


def connected_server(protocol: Any, reactor: Any = None, transport: Any = tcp.Server
                     ) -> "tuple[tcp.Server, socket.socket]":
    """
    A real loopback TCP connection: the accepted side wrapped in a real
    ``tcp.Server`` (or ``transport``, a subclass; on a memory reactor, so
    nothing polls it) and connected to ``protocol``, and the client's socket.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=10)
    accepted, address = listener.accept()
    listener.close()
    accepted.setblocking(False)
    server = transport(accepted, protocol, address, None, 1,
                       MemoryReactorClock() if reactor is None else reactor)
    protocol.makeConnection(server)
    return server, client


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The logged events called ``name``."""
    return [e for e in events if e.get("event") == name]

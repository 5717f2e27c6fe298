"""Tests for superd.port: the listening port whose factory may take sockets."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from superd.port import MAX_ACCEPTS_PER_WAKE, TAKEN, TakingPort, listen_taking


class Recorder(Protocol):
    def __init__(self) -> None:
        self.made = False

    def connectionMade(self) -> None:
        self.made = True


class Taking(Factory):
    """A factory that answers take_socket with what the test asks for."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.taken: list[tuple[int, Any]] = []
        self.protocols: list[Recorder] = []

    def take_socket(self, skt: socket.socket, addr: Any) -> Any:
        if self.answer == "take":
            self.taken.append((skt.fileno(), addr))
            skt.close()
            return TAKEN
        if self.answer == "refuse":
            return None
        protocol = Recorder()
        self.protocols.append(protocol)
        return protocol


def listening(factory: Any, backlog: int = 50) -> tuple[TakingPort, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    port = listen_taking(reactor, 0, factory, backlog, "127.0.0.1")
    return port, reactor


def connect(port: TakingPort) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    port.doRead()  # the kernel finished the handshake: accept now
    return client


def test_taken_socket_never_becomes_a_transport() -> None:
    """TAKEN: the factory got the accepted socket and the peer's address;
    no transport was made, nothing polls it, and its close reaches the client."""
    factory = Taking("take")
    port, reactor = listening(factory)
    client = connect(port)
    ((fd, addr),) = factory.taken
    assert isinstance(addr, IPv4Address) and addr.port == client.getsockname()[1]
    assert fd >= 0 and reactor.getReaders() == [port]
    assert client.recv(1) == b""
    client.close()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_refused_socket_is_closed() -> None:
    """None: the port closes the socket, as tcp.Port does."""
    port, reactor = listening(Taking("refuse"))
    client = connect(port)
    assert client.recv(1) == b"" and reactor.getReaders() == [port]
    client.close()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_protocol_answer_is_served_like_tcp_port() -> None:
    """A protocol: connected to a real tcp.Server transport."""
    factory = Taking("protocol")
    port, reactor = listening(factory)
    client = connect(port)
    (protocol,) = factory.protocols
    assert protocol.made and isinstance(protocol.transport, tcp.Server)
    assert protocol.transport in reactor.getReaders()
    protocol.transport.write(b"hi")
    protocol.transport.doWrite()
    assert client.recv(2) == b"hi"
    client.close()
    protocol.transport.connectionLost(Failure(ConnectionDone()))
    port.connectionLost(None)  # type: ignore[arg-type]


def test_factory_without_take_socket_is_plain_tcp_port() -> None:
    """A factory that cannot take sockets (TLS, a builtin after a reload)."""
    factory = Factory.forProtocol(Recorder)
    port, reactor = listening(factory)
    client = connect(port)
    (server,) = [r for r in reactor.getReaders() if r is not port]
    assert isinstance(server, tcp.Server) and isinstance(server.protocol, Recorder)
    assert server.protocol.made
    server.connectionLost(Failure(ConnectionDone()))
    client.close()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_twisted_internals_it_reuses_are_there() -> None:
    """TakingPort reuses tcp.Port's private accept loop pieces; a Twisted
    upgrade that renames them must fail here, not in production."""
    assert tcp._accept.__code__.co_varnames[:4] == (
        "logger", "accepts", "listener", "reservedFD")
    assert hasattr(tcp._reservedFD, "available") and hasattr(tcp, "_BuffersLogs")
    port, _ = listening(Factory())
    assert port.numberAccepts == 100 and port._logger.namespace
    port.connectionLost(None)  # type: ignore[arg-type]


def test_accepts_per_wake_up_are_capped() -> None:
    """A full batch grows the next one as tcp.Port does, but never past
    MAX_ACCEPTS_PER_WAKE: spawning blocks the reactor per connection."""
    factory = Taking("take")
    port, _ = listening(factory, backlog=4 * MAX_ACCEPTS_PER_WAKE)
    port.numberAccepts = 2
    clients = [socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
               for _ in range(3)]
    port.doRead()
    assert len(factory.taken) == 2 and port.numberAccepts == 22
    port.numberAccepts = MAX_ACCEPTS_PER_WAKE - 5
    for _ in range(MAX_ACCEPTS_PER_WAKE):
        clients.append(socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10))
    port.doRead()
    assert port.numberAccepts == MAX_ACCEPTS_PER_WAKE
    for client in clients:
        client.close()
    port.connectionLost(None)  # type: ignore[arg-type]

"""Tests for superd.net.takingport: the listening port whose factory may take sockets."""

from __future__ import annotations

import os
import socket
from errno import EAGAIN, EBADF, ECONNABORTED, EMFILE, EPERM
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure

from superd.core.session import Peer
from superd.net.takingport import (
    MAX_ACCEPTS_PER_WAKE,
    TAKEN,
    TakingPort,
    accept_descriptors,
    listen_taking,
)


class Recorder(Protocol):
    def __init__(self) -> None:
        self.made = False

    def connectionMade(self) -> None:
        self.made = True


class Taking(Factory):
    """A factory that answers take_connection with what the test asks for."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.taken: list[tuple[int, Any, Any]] = []
        self.protocols: list[Recorder] = []

    def take_connection(self, fd: int, address: Any, local: Any) -> Any:
        self.taken.append((fd, address, local))
        if self.answer == "take":
            return TAKEN
        if self.answer == "refuse":
            return None
        if self.answer == "raise":
            raise RuntimeError("broken factory")
        protocol = Recorder()
        self.protocols.append(protocol)
        return protocol


def listening(factory: Any, backlog: int = 50,
              interface: str = "127.0.0.1") -> tuple[TakingPort, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    port = listen_taking(reactor, 0, factory, backlog, interface)
    return port, reactor


def connect(port: TakingPort) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    port.doRead()  # the kernel finished the handshake: accept now
    return client


def test_taken_connection_never_becomes_a_socket_object() -> None:
    """TAKEN: the factory got the bare descriptor, the peer's address tuple
    and the port's own address; no transport was made, nothing polls it,
    and the port's close of the descriptor reaches the client."""
    factory = Taking("take")
    port, reactor = listening(factory)
    client = connect(port)
    ((fd, address, local),) = factory.taken
    assert address == client.getsockname()
    assert local == Peer("127.0.0.1", port.getHost().port)
    assert reactor.getReaders() == [port]
    assert client.recv(1) == b""
    with pytest.raises(OSError):
        os.fstat(fd)  # closed (and not reused in between: nothing opened one)
    client.close()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_descriptors_are_blocking_whatever_the_default_timeout() -> None:
    """Inetd servers expect blocking I/O; a Python default socket timeout
    (which makes socket.accept() return non-blocking sockets) changes nothing."""
    seen: list[bool] = []

    class Checking(Taking):
        def take_connection(self, fd: int, address: Any, local: Any) -> Any:
            seen.append(os.get_blocking(fd))
            return TAKEN

    socket.setdefaulttimeout(5)
    try:
        port, _ = listening(Checking("take"))
        client = connect(port)
    finally:
        socket.setdefaulttimeout(None)
    assert seen == [True]
    client.close()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_a_wildcard_port_does_not_know_the_local_address() -> None:
    """Bound to 0.0.0.0, each connection's local address is its own."""
    factory = Taking("take")
    port, _ = listening(factory, interface="0.0.0.0")
    client = connect(port)
    assert [local for _, _, local in factory.taken] == [None]
    client.close()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_refused_connection_is_closed() -> None:
    """None: the port closes the descriptor, as tcp.Port closes the socket."""
    port, reactor = listening(Taking("refuse"))
    client = connect(port)
    assert client.recv(1) == b"" and reactor.getReaders() == [port]
    client.close()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_a_failing_factory_loses_no_descriptor() -> None:
    """An exception from take_connection is logged; the connection is closed."""
    port, reactor = listening(Taking("raise"))
    logged: list[Any] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        client = connect(port)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert client.recv(1) == b"" and reactor.getReaders() == [port]
    assert any(e.get("log_failure") is not None or e.get("failure") is not None for e in logged)
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
    assert protocol.transport.getPeer() == IPv4Address("TCP", *client.getsockname())
    protocol.transport.write(b"hi")
    protocol.transport.doWrite()
    assert client.recv(2) == b"hi"
    client.close()
    protocol.transport.connectionLost(Failure(ConnectionDone()))
    port.connectionLost(None)  # type: ignore[arg-type]


def test_factory_without_take_connection_is_plain_tcp_port() -> None:
    """A factory that cannot take connections (TLS, a builtin after a
    reload), or says so with take_connection = None."""
    plain, declining = Factory.forProtocol(Recorder), Factory.forProtocol(Recorder)
    declining.take_connection = None  # type: ignore[attr-defined]
    for factory in (plain, declining):
        port, reactor = listening(factory)
        client = connect(port)
        (server,) = [r for r in reactor.getReaders() if r is not port]
        assert isinstance(server, tcp.Server) and isinstance(server.protocol, Recorder)
        assert server.protocol.made
        server.connectionLost(Failure(ConnectionDone()))
        client.close()
        port.connectionLost(None)  # type: ignore[arg-type]


class FakeListener:
    """A listening socket whose accepts fail or succeed as scripted."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script

    def _accept(self) -> tuple[int, Any]:
        step = self.script.pop(0)
        if isinstance(step, int):
            raise OSError(step, os.strerror(step))
        return step


class Reserved:
    """tcp._reservedFD's interface: released inside the with block."""

    def __init__(self) -> None:
        self.released = 0

    def available(self) -> bool:
        return True

    def __enter__(self) -> None:
        self.released += 1

    def __exit__(self, *exc: Any) -> None:
        pass


def test_emfile_releases_the_reserve_and_drains_the_backlog() -> None:
    """Out of descriptors: as Twisted does, release the reserved descriptor,
    accept and close what is pending, and end the wake-up; the caller never
    sees those connections."""
    spares = [os.open(os.devnull, os.O_RDONLY) for _ in range(2)]
    listener = FakeListener([EMFILE, (spares[0], ("10.0.0.1", 1)),
                             (spares[1], ("10.0.0.2", 2)), EAGAIN])
    reserved = Reserved()
    logger = Logger(observer=lambda event: None)
    assert list(accept_descriptors(logger, range(10), listener, reserved)) == []  # type: ignore[arg-type]
    assert reserved.released == 1 and listener.script == []
    for fd in spares:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_accept_errors_end_the_wake_up_or_skip() -> None:
    """EPERM (netfilter) skips to the next connection; ECONNABORTED ends the
    wake-up; an unexpected error propagates."""
    listener = FakeListener([EPERM, (5, ("10.0.0.1", 1)), ECONNABORTED, (6, None)])
    logger = Logger(observer=lambda event: None)
    got = list(accept_descriptors(logger, range(10), listener, Reserved()))  # type: ignore[arg-type]
    assert got == [(5, ("10.0.0.1", 1))] and len(listener.script) == 1
    with pytest.raises(OSError):
        list(accept_descriptors(logger, range(10), FakeListener([EBADF]),  # type: ignore[arg-type]
                                Reserved()))


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


class Batching(Taking):
    """A factory that asks for batches of ``size`` and records them."""

    def __init__(self, answer: str, size: int) -> None:
        super().__init__(answer)
        self.batch_size = size
        self.events: list[Any] = []

    def begin_batch(self) -> None:
        self.events.append("begin")

    def end_batch(self) -> None:
        self.events.append("end")

    def take_connection(self, fd: int, address: Any, local: Any) -> Any:
        self.events.append(address[1])
        if self.answer == "raise" and len(self.taken) == 1:
            self.taken.append((fd, address, local))
            raise RuntimeError("broken factory")
        return super().take_connection(fd, address, local)


def test_batches_are_accepted_before_they_are_decided() -> None:
    """With batch_size 2, five pending connections are accepted two at a
    time (the last one alone), and each batch is announced only once all of
    it was accepted; every client gets the close."""
    factory = Batching("take", 2)
    port, reactor = listening(factory)
    clients = [socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
               for _ in range(5)]
    port.doRead()
    a, b, c, d, e = (client.getsockname()[1] for client in clients)
    assert factory.events == ["begin", a, b, "end", "begin", c, d, "end", "begin", e, "end"]
    for client in clients:
        assert client.recv(1) == b""
        client.close()
    assert reactor.getReaders() == [port]
    port.connectionLost(None)  # type: ignore[arg-type]


def test_a_failure_in_a_batch_loses_no_descriptor() -> None:
    """One connection of a batch whose taking raises is logged and closed;
    the rest of the batch is still served and the batch still ends."""
    factory = Batching("raise", 3)
    port, _ = listening(factory)
    clients = [socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
               for _ in range(3)]
    logged: list[Any] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        port.doRead()
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert factory.events[0] == "begin" and factory.events[-1] == "end"
    assert len(factory.taken) == 3
    assert any(e.get("log_failure") is not None or e.get("failure") is not None for e in logged)
    for client in clients:
        assert client.recv(1) == b""
        client.close()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_ipv6_connections_are_taken_with_their_addresses() -> None:
    """On ::1 the factory gets accept()'s 4-tuple and the port's own address;
    a protocol answer still gets an IPv6 transport."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    factory = Taking("take")
    reactor = MemoryReactorClock()
    port = listen_taking(reactor, 0, factory, 50, "::1")
    client = socket.create_connection(("::1", port.getHost().port), timeout=10)
    port.doRead()
    ((_, address, local),) = factory.taken
    assert address[:2] == client.getsockname()[:2] and len(address) == 4
    assert local == Peer("::1", port.getHost().port)
    assert client.recv(1) == b""
    factory.answer = "protocol"
    other = socket.create_connection(("::1", port.getHost().port), timeout=10)
    port.doRead()
    (protocol,) = factory.protocols
    transport: Any = protocol.transport
    assert transport.getPeer().host == "::1"
    transport.connectionLost(Failure(ConnectionDone()))
    client.close()
    other.close()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_only_a_protocol_class_that_serves_bare_is_served_bare() -> None:
    """serves_bare is read from the protocol's class: a protocol that passes
    unknown attributes through to another (a wrapper) gets a real transport."""

    class BareServing(Recorder):
        serves_bare = True

    class PassingThrough(Recorder):
        def __getattr__(self, name: str) -> Any:
            return getattr(BareServing(), name)

    passing = PassingThrough()
    assert passing.serves_bare

    class Answering(Taking):
        def take_connection(self, fd: int, address: Any, local: Any) -> Any:
            return passing

    port, reactor = listening(Answering("protocol"))
    client = connect(port)
    assert isinstance(passing.transport, tcp.Server)
    client.close()
    passing.transport.connectionLost(Failure(ConnectionDone()))
    port.connectionLost(None)  # type: ignore[arg-type]

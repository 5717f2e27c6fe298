"""
Tests for superd.net.tcpconnect: the redirect relay's outbound connect, on
real loopback sockets.  The attempt's own logic (timeout, giving up) runs
on a memory reactor; connecting and refusals run on a private epoll reactor
(never the global one) driven one iteration at a time.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.error import ConnectionRefusedError, TimeoutError, UserError
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from superd.net.connection import Connection
from superd.net.tcpconnect import BareClientConnection, TCPAttempt, connect_tcp


class Received(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class Recording(ClientFactory):
    """Records what a connector tells a factory."""

    def __init__(self) -> None:
        self.built: list[Any] = []
        self.protocols: list[Received] = []
        self.failures: list[Failure] = []

    def buildProtocol(self, addr: Any) -> Received:
        self.built.append(addr)
        protocol = Received()
        self.protocols.append(protocol)
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.failures.append(reason)


@contextlib.contextmanager
def full_listener() -> Iterator[int]:
    """The port of a listening socket whose accept queue is full: a connect()
    to it stays under way (its SYNs are dropped)."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            yield port


@pytest.fixture
def reactor() -> Iterator[EPollReactor]:
    """A private epoll reactor (not installed, never run: iterated by hand)."""
    private = EPollReactor()  # type: ignore[no-untyped-call]
    yield private
    private.removeAll()
    private._poller.close()


def iterate_until(reactor: EPollReactor, done: Any, rounds: int = 200) -> None:
    for _ in range(rounds):
        if done():
            return
        reactor.iterate(0.01)  # type: ignore[no-untyped-call]
    raise AssertionError("nothing happened")


def connected(reactor: EPollReactor, port: int, factory: Recording) -> Received:
    """The one protocol ``factory`` built, once connect_tcp gave it its transport."""
    connect_tcp(reactor, "127.0.0.1", port, factory, 5.0)
    iterate_until(reactor, lambda: factory.protocols
                  and factory.protocols[0].transport is not None)
    (protocol,) = factory.protocols
    return protocol


def test_connects_on_superds_transport(reactor: EPollReactor) -> None:
    """The connected socket is served by superd's Connection; the factory
    builds the protocol with the peer's address; bytes flow both ways."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        factory = Recording()
        protocol = connected(reactor, port, factory)
        transport = protocol.transport
        assert isinstance(transport, Connection)
        assert factory.built == [IPv4Address("TCP", "127.0.0.1", port)]
        assert transport.getPeer() == IPv4Address("TCP", "127.0.0.1", port)
        assert "Received" in repr(transport)
        peer, _ = server.accept()
        with peer:
            transport.write(b"up")
            assert peer.recv(10) == b"up"
            peer.sendall(b"down")
            iterate_until(reactor, lambda: protocol.data == b"down")
            transport.loseConnection()
            iterate_until(reactor, lambda: not transport.connected)
            assert peer.recv(10) == b""
        assert factory.failures == []


class BareReceived(Received):
    serves_bare = True


class BareRecording(Recording):
    def buildProtocol(self, addr: Any) -> Received:
        self.built.append(addr)
        protocol = BareReceived()
        self.protocols.append(protocol)
        return protocol


def test_a_protocol_that_serves_bare_gets_the_bare_descriptor(reactor: EPollReactor) -> None:
    """A protocol class with serves_bare is served on the descriptor itself
    (BareClientConnection, the reactor's reader); a write the kernel does not
    take whole moves it onto superd's Connection, built as for any other
    outbound connection, with the rest buffered in order."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        factory = BareRecording()
        protocol = connected(reactor, port, factory)
        bare = protocol.transport
        assert isinstance(bare, BareClientConnection)
        assert bare in reactor.getReaders()
        assert bare.getPeer() == IPv4Address("TCP", "127.0.0.1", port)
        peer, _ = server.accept()
        with peer:
            peer.sendall(b"down")
            iterate_until(reactor, lambda: protocol.data == b"down")
            sent = b""
            for _ in range(10_000):
                block = bytes([len(sent) % 251]) * 65536
                bare.write(block)
                sent += block
                if bare.buffered():
                    break
            moved = protocol.transport
            assert isinstance(moved, Connection) and moved.fileno() == bare.fileno()
            assert "BareReceived" in repr(moved)
            peer.setblocking(False)
            received = b""
            for _ in range(10_000):
                if len(received) == len(sent):
                    break
                reactor.iterate(0.01)  # type: ignore[no-untyped-call]
                with contextlib.suppress(BlockingIOError):
                    received += peer.recv(1 << 20)
            assert received == sent
            bare.loseConnection()
            iterate_until(reactor, lambda: not moved.connected)
        assert factory.failures == []


def test_refused_connect_fails_with_twisteds_error(reactor: EPollReactor) -> None:
    """A port nobody listens on (held bound, so no other process takes it):
    clientConnectionFailed with ConnectionRefusedError, nothing built, the
    reactor no longer watches the attempt."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        factory = Recording()
        attempt = connect_tcp(reactor, "127.0.0.1", port, factory, 5.0)
        iterate_until(reactor, lambda: factory.failures)
    assert [f.type for f in factory.failures] == [ConnectionRefusedError]
    assert factory.built == [] and reactor.getWriters() == []
    attempt.stopConnecting()  # ended already: nothing more
    assert len(factory.failures) == 1


def test_timeout_gives_up_the_attempt() -> None:
    """No outcome within ``timeout``: TimeoutError, the socket closed and no
    longer watched."""
    clock = MemoryReactorClock()
    with full_listener() as port:
        factory = Recording()
        attempt = TCPAttempt(clock, "127.0.0.1", port, factory, 3.0)
        attempt.start()
        assert clock.getWriters() == [attempt]  # connect() under way
        clock.advance(2.9)
        assert factory.failures == []
        clock.advance(0.2)
    assert [f.type for f in factory.failures] == [TimeoutError]
    assert clock.getWriters() == [] and attempt.fileno() == -1
    assert not clock.getDelayedCalls()


def test_stop_connecting_gives_up_once() -> None:
    """stopConnecting: UserError (as Twisted's connector), timer cancelled,
    socket closed; a second call and the old timer do nothing."""
    clock = MemoryReactorClock()
    with full_listener() as port:
        factory = Recording()
        attempt = TCPAttempt(clock, "127.0.0.1", port, factory, 3.0)
        attempt.start()
        attempt.stopConnecting()
        attempt.stopConnecting()
        clock.advance(10)
    assert [f.type for f in factory.failures] == [UserError]
    assert clock.getWriters() == [] and attempt.fileno() == -1


def test_a_connect_over_at_once_is_not_watched(reactor: EPollReactor) -> None:
    """A local upstream that accepted during connect(): connected at once,
    with no writability watch and no timer."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        factory = Recording()
        attempt = TCPAttempt(reactor, "127.0.0.1", server.getsockname()[1], factory, 3.0)
        attempt.start()
        assert len(factory.protocols) == 1 and factory.protocols[0].transport is not None
        assert attempt not in reactor.getWriters() and not reactor.getDelayedCalls()
        factory.protocols[0].transport.loseConnection()


def test_other_reactors_get_connect_tcp() -> None:
    """A reactor that is not one of Twisted's posix reactors (a test fake)
    gets connectTCP with the timeout."""
    clock = MemoryReactorClock()
    factory = Recording()
    connect_tcp(clock, "127.0.0.1", 7, factory, 4.0)
    host, port, given, timeout, _ = clock.tcpClients[0]
    assert (host, port, given, timeout) == ("127.0.0.1", 7, factory, 4.0)


def test_connects_to_an_ipv6_address(reactor: EPollReactor) -> None:
    """An IPv6 upstream: an AF_INET6 socket, and the transport's peer is an
    IPv6Address."""
    from twisted.internet.address import IPv6Address

    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        port = server.getsockname()[1]
        factory = Recording()
        connect_tcp(reactor, "::1", port, factory, 5.0)
        iterate_until(reactor, lambda: factory.protocols
                      and factory.protocols[0].transport is not None)
        transport = factory.protocols[0].transport
        assert transport.getPeer() == IPv6Address("TCP", "::1", port)
        assert factory.built == [IPv6Address("TCP", "::1", port)]
        transport.loseConnection()
        iterate_until(reactor, lambda: not transport.connected)


class HalfCloseReceived(BareReceived):
    def __init__(self) -> None:
        super().__init__()
        self.eof = 0

    def readConnectionLost(self) -> None:
        self.eof += 1


class HalfCloseRecording(Recording):
    def buildProtocol(self, addr: Any) -> Received:
        protocol = HalfCloseReceived()
        self.protocols.append(protocol)
        return protocol


def test_an_answer_and_its_eof_are_read_in_one_turn(reactor: EPollReactor) -> None:
    """An outbound bare connection reads once more after a short read: an
    upstream's answer and its FIN sent together are both seen in one
    doRead; without the FIN, the second read finds nothing and the
    connection stays watched."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        factory = HalfCloseRecording()
        protocol = connected(reactor, server.getsockname()[1], factory)
        assert isinstance(protocol, HalfCloseReceived)
        bare = protocol.transport
        assert isinstance(bare, BareClientConnection)
        peer, _ = server.accept()
        with peer:
            peer.sendall(b"more to come")
            iterate_until(reactor, lambda: protocol.data == b"more to come")
            assert protocol.eof == 0 and bare in reactor.getReaders()
            peer.sendall(b"; the end")
            peer.shutdown(socket.SHUT_WR)
            watch = select.poll()  # until the FIN is queued behind the bytes
            watch.register(bare.fileno(), select.POLLRDHUP)
            assert watch.poll(5000)
            assert bare.doRead() is None
            assert protocol.data == b"more to come; the end" and protocol.eof == 1
            assert bare not in reactor.getReaders()
            bare.loseConnection()

"""
Tests for superd.net.bare: a connection served on its bare descriptor, on
real loopback sockets accepted by a ``TakingPort`` (the reactor is a memory
reactor, so nothing runs unless a test says so).
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import Any

from twisted.internet import main
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from superd.net.bare import BareConnection
from superd.net.connection import Connection, close_if_flushed, close_writing_if_flushed
from superd.net.takingport import TakingPort, listen_taking
from tests.fakes import is_open


class Bare(Protocol):
    """Records what happens to it; a TakingPort serves it on the bare descriptor."""

    serves_bare = True

    def __init__(self, half_close: bool = False) -> None:
        self.received: list[bytes] = []
        self.lost: list[Failure] = []
        self.read_lost = 0
        self.write_lost = 0
        self.made = False
        if half_close:
            self.readConnectionLost = self._read_lost  # type: ignore[method-assign]
            self.writeConnectionLost = self._write_lost  # type: ignore[method-assign]

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def _read_lost(self) -> None:
        self.read_lost += 1

    def _write_lost(self) -> None:
        self.write_lost += 1

    def connectionLost(self, reason: Failure = main.CONNECTION_DONE) -> None:  # type: ignore[assignment]
        self.lost.append(reason)


class Taking(Factory):
    def __init__(self, protocol: Protocol) -> None:
        self.protocol_given = protocol

    def take_connection(self, fd: int, address: Any, local: Any) -> Any:
        return self.protocol_given


def served(protocol: Bare | None = None, interface: str = "127.0.0.1"
           ) -> tuple[Bare, BareConnection, socket.socket, MemoryReactorClock, TakingPort]:
    """A real connection, accepted and served bare; the client socket."""
    protocol = Bare() if protocol is None else protocol
    reactor = MemoryReactorClock()
    port = listen_taking(reactor, 0, Taking(protocol), 50, interface)
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    client = socket.socket(family, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect((interface, port.getHost().port))
    port.doRead()
    transport = protocol.transport
    assert isinstance(transport, BareConnection)
    return protocol, transport, client, reactor, port


def test_served_on_the_descriptor_non_blocking_and_polled() -> None:
    """No socket object, no tcp.Server: the transport itself is the reactor's
    reader, on a non-blocking descriptor, and the protocol was connected."""
    protocol, transport, client, reactor, port = served()
    with client:
        assert protocol.made
        assert transport in reactor.getReaders()
        assert fcntl.fcntl(transport.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
        assert transport.getPeer() == IPv4Address("TCP", *client.getsockname())
        assert transport.getHost() == IPv4Address("TCP", *client.getpeername())
        assert transport.logPrefix() == "Bare"
        transport.doRead()  # nothing sent yet: no data, no loss
        assert protocol.received == [] and protocol.lost == []
        transport.loseConnection()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_reads_and_writes_go_straight_to_the_kernel() -> None:
    protocol, transport, client, reactor, port = served()
    with client:
        client.sendall(b"ping\x00\r\n")
        transport.doRead()
        assert protocol.received == [b"ping\x00\r\n"]
        transport.write(b"pong")
        transport.writeSequence([b"-", b"!"])
        assert not transport.buffered()
        assert client.recv(10) == b"pong-!"
        transport.loseConnection()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_eof_closes_a_protocol_that_is_not_half_close_aware() -> None:
    """The client's EOF closes the descriptor at once (the client reads EOF),
    unregisters it and tells the protocol, once."""
    protocol, transport, client, reactor, port = served()
    fd = transport.fileno()
    with client:
        client.shutdown(socket.SHUT_WR)
        transport.doRead()
        assert len(protocol.lost) == 1 and protocol.lost[0].check(ConnectionDone)
        assert transport not in reactor.getReaders() and not transport.connected
        assert client.recv(10) == b""
        transport.connectionLost(Failure(ConnectionLost()))  # late: ignored
        assert len(protocol.lost) == 1
    assert not is_open(fd)
    port.connectionLost(None)  # type: ignore[arg-type]


def test_eof_goes_to_a_half_close_aware_protocol() -> None:
    protocol, transport, client, reactor, port = served(Bare(half_close=True))
    with client:
        client.shutdown(socket.SHUT_WR)
        transport.doRead()
        assert protocol.read_lost == 1 and protocol.lost == []
        assert close_if_flushed(transport)
        assert len(protocol.lost) == 1 and protocol.lost[0].check(ConnectionDone)
        assert client.recv(10) == b""
    port.connectionLost(None)  # type: ignore[arg-type]


def test_the_eof_of_a_half_close_aware_protocol_ends_reading() -> None:
    """As Twisted's transports do: after the peer's EOF the descriptor is no
    longer watched (it stays readable, so a watched one would wake the
    reactor for ever), and resuming does not watch it again."""
    protocol, transport, client, reactor, port = served(Bare(half_close=True))
    with client:
        client.shutdown(socket.SHUT_WR)
        transport.doRead()
        assert protocol.read_lost == 1 and transport not in reactor.getReaders()
        transport.pauseProducing()
        transport.resumeProducing()
        assert transport not in reactor.getReaders()
        transport.write(b"still writable")
        assert client.recv(100) == b"still writable"
        transport.loseConnection()
        assert len(protocol.lost) == 1
    port.connectionLost(None)  # type: ignore[arg-type]


def test_half_close_sends_fin_and_keeps_reading() -> None:
    """close_writing_if_flushed shuts the write side down at once (the peer
    reads EOF) and tells the protocol; later writes are dropped; the peer's
    bytes are still read."""
    protocol, transport, client, reactor, port = served(Bare(half_close=True))
    with client:
        transport.write(b"last")
        assert close_writing_if_flushed(transport)
        assert protocol.write_lost == 1
        assert client.recv(10) == b"last" and client.recv(10) == b""
        transport.write(b"dropped")
        transport.loseWriteConnection()  # already half-closed: nothing more
        assert protocol.write_lost == 1
        assert transport in reactor.getReaders()
        client.sendall(b"more")
        transport.doRead()
        assert protocol.received == [b"more"]
        assert close_if_flushed(transport)
        assert len(protocol.lost) == 1 and protocol.lost[0].check(ConnectionDone)
    port.connectionLost(None)  # type: ignore[arg-type]


def test_tcp_options_are_set_on_the_descriptor() -> None:
    protocol, transport, client, reactor, port = served()
    with client:
        transport.setTcpNoDelay(True)
        transport.setTcpKeepAlive(True)
        with socket.socket(fileno=os.dup(transport.fileno())) as view:
            assert view.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert view.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        transport.loseConnection()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_stop_producing_closes_it() -> None:
    """A consumer this fed is gone (Twisted calls stopProducing): closed, as a
    Twisted transport closes."""
    protocol, transport, client, reactor, port = served()
    with client:
        transport.stopProducing()
        assert len(protocol.lost) == 1 and client.recv(10) == b""
    port.connectionLost(None)  # type: ignore[arg-type]


def test_a_reset_peer_is_lost_through_the_reactor() -> None:
    """A read error is returned to the reactor, which calls connectionLost."""
    protocol, transport, client, reactor, port = served()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.sendall(b"x")
    client.close()  # unread data was sent to the server: RST
    transport.doRead()  # the byte
    why = transport.doRead()
    assert why is main.CONNECTION_LOST
    transport.write(b"lost")  # a write to a reset peer is dropped quietly
    transport.connectionLost(Failure(why))
    assert len(protocol.lost) == 1 and protocol.lost[0].check(ConnectionLost)
    assert transport not in reactor.getReaders()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_abort_resets_on_the_next_turn() -> None:
    """abortConnection stops reading at once and resets the connection (RST)
    on the next reactor turn, when the protocol hears of it, as Twisted's."""
    protocol, transport, client, reactor, port = served()
    with client:
        transport.abortConnection()
        assert transport not in reactor.getReaders() and protocol.lost == []
        transport.abortConnection()  # a second call changes nothing
        transport.write(b"late")  # dropped: the connection is being reset
        transport.loseConnection()  # nor does a graceful close undo the abort
        assert close_if_flushed(transport)
        transport.resumeProducing()
        assert transport not in reactor.getReaders() and protocol.lost == []
        reactor.advance(0)
        assert len(protocol.lost) == 1 and protocol.lost[0].check(ConnectionAborted)
        try:
            data = client.recv(10)
        except ConnectionResetError:
            data = None
        assert data is None
    port.connectionLost(None)  # type: ignore[arg-type]


def test_what_the_kernel_does_not_take_moves_the_connection_to_twisted() -> None:
    """The first write the kernel does not take whole moves the connection
    onto the ordinary transport, with the rest buffered there in order; the
    old transport forwards to it."""
    protocol, transport, client, reactor, port = served()
    with client:
        fd = transport.fileno()
        block = bytes(range(256)) * 256
        sent = b""
        for _ in range(10_000):
            transport.write(block)
            sent += block
            if transport.buffered():
                break
        moved = protocol.transport
        assert isinstance(moved, Connection) and moved is not transport
        assert moved.fileno() == fd and moved.buffered()
        assert moved in reactor.getReaders() and transport not in reactor.getReaders()
        assert moved.getPeer() == transport.getPeer()
        transport.write(b"end")  # through the old transport too: after the rest
        sent += b"end"
        received = b""
        while len(received) < len(sent):
            moved.doWrite()
            received += client.recv(1 << 20)
        assert received == sent
        assert close_if_flushed(transport)  # the moved one answers
        assert len(protocol.lost) == 1 and protocol.lost[0].check(ConnectionDone)
    port.connectionLost(None)  # type: ignore[arg-type]


def _fill(transport: BareConnection) -> None:
    """Write until the kernel does not take a write whole (the connection moves)."""
    block = b"x" * 65536
    for _ in range(10_000):
        transport.write(block)
        if transport.buffered():
            return
    raise AssertionError("the kernel took everything")


def test_a_paused_connection_stays_paused_when_it_moves() -> None:
    """Paused (a relay's other side is full), then moved by a write: the
    ordinary transport does not start reading until resumed."""
    protocol, transport, client, reactor, port = served()
    with client:
        transport.pauseProducing()
        _fill(transport)
        moved = protocol.transport
        assert isinstance(moved, Connection) and moved not in reactor.getReaders()
        transport.resumeProducing()
        assert moved in reactor.getReaders()
        transport.abortConnection()
        reactor.advance(0)
    port.connectionLost(None)  # type: ignore[arg-type]


def test_a_connection_past_its_eof_does_not_read_when_it_moves() -> None:
    protocol, transport, client, reactor, port = served(Bare(half_close=True))
    with client:
        client.shutdown(socket.SHUT_WR)
        transport.doRead()
        _fill(transport)
        moved = protocol.transport
        assert isinstance(moved, Connection) and moved not in reactor.getReaders()
        transport.abortConnection()
        reactor.advance(0)
    port.connectionLost(None)  # type: ignore[arg-type]


def test_a_producer_moves_the_connection_to_twisted() -> None:
    protocol, transport, client, reactor, port = served()
    with client:
        producer = Bare()
        transport.registerProducer(producer, True)
        moved = protocol.transport
        assert isinstance(moved, Connection) and moved.producer is producer
        transport.pauseProducing()
        assert moved not in reactor.getReaders()
        transport.resumeProducing()
        assert moved in reactor.getReaders()
        transport.unregisterProducer()
        assert moved.producer is None
        transport.abortConnection()
        reactor.advance(0)
        assert protocol.lost[0].check(ConnectionAborted)
    port.connectionLost(None)  # type: ignore[arg-type]


def test_pausing_stops_reading() -> None:
    protocol, transport, client, reactor, port = served()
    with client:
        transport.pauseProducing()
        assert transport not in reactor.getReaders()
        transport.resumeProducing()
        assert transport in reactor.getReaders()
        transport.loseConnection()
        transport.resumeProducing()  # closed: stays unregistered
        assert transport not in reactor.getReaders()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_the_reactor_closing_everything_closes_it() -> None:
    protocol, transport, client, reactor, port = served()
    fd = transport.fileno()
    with client:
        transport.connectionLost(Failure(ConnectionLost()))
        assert protocol.lost[0].check(ConnectionLost) and not is_open(fd)
        assert client.recv(10) == b""
    port.connectionLost(None)  # type: ignore[arg-type]


def test_ipv6_peer_and_host() -> None:
    protocol, transport, client, reactor, port = served(interface="::1")
    with client:
        peer = client.getsockname()
        assert transport.getPeer() == IPv6Address("TCP", "::1", peer[1])
        assert transport.getHost() == IPv6Address("TCP", "::1", port.getHost().port)
        transport.loseConnection()
    port.connectionLost(None)  # type: ignore[arg-type]


def test_a_write_error_past_the_eof_loses_the_connection() -> None:
    """Past the peer's EOF nothing reads the descriptor, so a write that
    meets a reset loses the connection itself, on the next turn."""
    protocol, transport, client, reactor, port = served(Bare(half_close=True))
    client.shutdown(socket.SHUT_WR)
    transport.doRead()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # RST
    transport.write(b"to nobody")
    assert protocol.lost == []
    reactor.advance(0)
    assert len(protocol.lost) == 1 and protocol.lost[0].check(ConnectionLost)
    assert not transport.connected
    transport.write(b"more")  # dropped
    port.connectionLost(None)  # type: ignore[arg-type]

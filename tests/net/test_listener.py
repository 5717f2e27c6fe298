"""Tests for superd.net.listener: the IListener interface, Listener and Listeners."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet import udp
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from superd.config.model import Location, SocketType
from superd.net.address import ListenAddress
from superd.net.listener import IListener, Listener, Listeners, ListenState, ListenStatus
from superd.net.takingport import listen_taking


def address(socket_type: SocketType = SocketType.STREAM, host: str = "127.0.0.1") -> ListenAddress:
    return ListenAddress("echo", "echo", host, 0, socket_type, Location("conf/echo", 1))


class Counting(Factory):
    protocol = Protocol

    def __init__(self) -> None:
        self.built = 0

    def buildProtocol(self, addr: Any) -> Protocol:
        self.built += 1
        return super().buildProtocol(addr)  # type: ignore[no-any-return]


def stream(reactor: MemoryReactorClock, factory: Any) -> Listener:
    """A Listener on a real loopback TakingPort (nothing polls it)."""
    return Listener(address(), lambda a: listen_taking(reactor, 0, factory, 5, a.host), factory)


def test_listener_provides_ilistener_and_reports_its_state() -> None:
    """Closed until started; bound to the kernel's port while listening."""
    reactor = MemoryReactorClock()
    listener = stream(reactor, Counting())
    assert verifyObject(IListener, listener)
    assert listener.status() == ListenStatus(ListenState.CLOSED)
    assert listener.bound_port() is None and listener.listening_socket() is None
    listener.privilegedStartService()
    assert listener.status() == ListenStatus(ListenState.LISTENING)
    sock = listener.listening_socket()
    assert sock is not None and listener.bound_port() == sock.getsockname()[1] != 0
    listener.stopService()
    assert listener.status() == ListenStatus(ListenState.CLOSED)
    assert listener.bound_port() is None and listener.listening_socket() is None


def test_listening_and_closing_are_logged_with_the_address(
        log_events: list[dict[str, Any]]) -> None:
    """Opening logs listening, closing logs not_listening, each with the
    service and the address as people write it; a listener whose socket
    went to a successor logs nothing when it stops."""
    reactor = MemoryReactorClock()
    listener, successor = stream(reactor, Counting()), stream(reactor, Counting())
    listener.privilegedStartService()
    where = f"tcp 127.0.0.1:{listener.bound_port()}"
    successor.adopt(listener)
    listener.stopService()
    successor.stopService()
    logged = [(e["event"], e["service_id"], e["where"]) for e in log_events
              if e.get("event") in ("listening", "not_listening")]
    assert logged == [("listening", "echo", where), ("not_listening", "echo", where)]


def test_adopting_a_stream_port_serves_it_with_the_new_factory() -> None:
    """The successor takes the bound port: its next connection is built by
    the new factory; the old one is stopped and holds nothing."""
    reactor = MemoryReactorClock()
    old_factory, new_factory = Counting(), Counting()
    old, new = stream(reactor, old_factory), stream(reactor, new_factory)
    old.privilegedStartService()
    port, bound = old.port, old.bound_port()
    new.adopt(old)
    assert new.port is port and new.bound_port() == bound and old.port is None
    assert old_factory.numPorts == 0 and new_factory.numPorts == 1
    with socket.create_connection(("127.0.0.1", bound), timeout=10):
        port.doRead()  # type: ignore[union-attr]
    assert (old_factory.built, new_factory.built) == (0, 1)
    old.stopService()  # closes nothing: the socket is new's
    assert new.listening_socket() is not None
    for reader in reactor.getReaders():
        if reader is not port:
            reader.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
    new.stopService()


class Datagrams(DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.got.append(datagram)


def test_adopting_a_datagram_port_delivers_to_the_new_protocol() -> None:
    """The bound udp.Port delivers its next datagram to the new protocol,
    which is connected to it; the old one is disconnected."""
    reactor = MemoryReactorClock()
    first, second = Datagrams(), Datagrams()

    def open_udp(protocol: Datagrams) -> Any:
        def open_port(a: ListenAddress) -> udp.Port:
            port = udp.Port(0, protocol, a.host, reactor=reactor)
            port.startListening()
            return port
        return open_port

    dgram = address(SocketType.DGRAM)
    old = Listener(dgram, open_udp(first), first)
    new = Listener(dgram, open_udp(second), second)
    old.privilegedStartService()
    new.adopt(old)
    assert second.transport is new.port and first.transport is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"ping", ("127.0.0.1", new.bound_port()))
    new.port.doRead()  # type: ignore[union-attr]
    assert first.got == [] and second.got == [b"ping"]
    new.close()


def test_adopting_a_closed_listener_leaves_both_closed() -> None:
    """A predecessor with no socket (its bind failed) hands over nothing."""
    reactor = MemoryReactorClock()
    old, new = stream(reactor, Counting()), stream(reactor, Counting())
    new.adopt(old)
    assert new.status().state is ListenState.CLOSED and new.port is None


def test_listeners_give_their_inet_sockets() -> None:
    """Listeners.sockets: each listener's bound socket, IPv4 and IPv6 only."""
    reactor = MemoryReactorClock()
    listeners = Listeners()
    one, two, closed = (stream(reactor, Counting()) for _ in range(3))
    for listener in (one, two, closed):
        listener.setServiceParent(listeners)
    one.privilegedStartService()
    two.privilegedStartService()
    assert [IListener.providedBy(c) for c in listeners] == [True, True, True]
    assert listeners.sockets() == [one.listening_socket(), two.listening_socket()]
    with socket.socket(socket.AF_UNIX) as unix_socket:
        unix = Listener(address(), lambda a: reactor.listenTCP(0, Factory()))
        unix.listening_socket = lambda: unix_socket  # type: ignore[method-assign]
        unix.setServiceParent(listeners)
        assert len(listeners.sockets()) == 2
    for listener in (one, two):
        listener.stopService()


def test_a_child_that_is_no_listener_is_an_error() -> None:
    """Every child of Listeners must provide IListener: a bug fails loudly."""
    listeners = Listeners()
    Service().setServiceParent(listeners)
    with pytest.raises(TypeError):
        listeners.sockets()

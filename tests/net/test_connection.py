"""
Tests for superd.net.connection: the transport that writes through an empty
buffer and closes a flushed connection at once, on real loopback sockets
(the reactor is a memory reactor, so nothing runs unless a test says so).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from twisted.internet import abstract, main, tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from superd.net.connection import Connection, close_if_flushed, close_writing_if_flushed
from tests.handlers.spawn.helpers import connected_server


class Recorder(Protocol):
    def __init__(self) -> None:
        self.lost: list[Failure] = []

    def connectionLost(self, reason: Failure = main.CONNECTION_DONE) -> None:  # type: ignore[assignment]
        self.lost.append(reason)


def connected(protocol: Any = None) -> tuple[Connection, socket.socket, MemoryReactorClock]:
    """A real accepted connection in a ``Connection`` and the client socket."""
    reactor = MemoryReactorClock()
    transport, client = connected_server(Recorder() if protocol is None else protocol,
                                         reactor, Connection)
    return transport, client, reactor  # type: ignore[return-value]


def recv_exactly(client: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def fill_kernel_buffers(transport: Connection) -> None:
    """Write until the kernel takes no more and Twisted buffers the rest."""
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    block = b"x" * 16384
    for _ in range(10_000):
        transport.write(block)
        if transport._tempDataLen:
            return
    raise AssertionError("the kernel never refused bytes")


def test_twisted_still_has_the_buffer_attributes() -> None:
    """The shortcuts read FileDescriptor's private buffer state: an upgrade
    that renames it must fail here, not silently change behaviour."""
    fd = abstract.FileDescriptor(MemoryReactorClock())  # type: ignore[no-untyped-call]
    for name in ("dataBuffer", "offset", "_tempDataLen", "_tempDataBuffer",
                 "_writeDisconnecting", "_writeDisconnected", "disconnecting", "producer",
                 "_getLogPrefix"):
        assert hasattr(fd, name), name
    assert fd.SEND_LIMIT > 0 and fd.dataBuffer == b"" and fd.offset == 0
    assert callable(tcp.Connection._closeWriteConnection)


def test_write_to_an_empty_buffer_is_sent_at_once() -> None:
    """No reactor turn and no writer registration: the client has the bytes."""
    transport, client, reactor = connected()
    with client:
        transport.write(b"hello")
        assert transport not in reactor.getWriters()
        assert recv_exactly(client, 5) == b"hello"
        assert transport._tempDataLen == 0 and transport.dataBuffer == b""


def test_what_the_kernel_does_not_take_is_buffered_in_order() -> None:
    """A full socket buffer: the rest waits in Twisted's buffer, later writes
    queue behind it, and doWrite delivers everything in order."""
    transport, client, reactor = connected()
    with client:
        fill_kernel_buffers(transport)
        transport.write(b"END")
        assert transport in reactor.getWriters()
        expected = transport._tempDataLen
        received = 0
        tail = b""
        client.settimeout(10)
        while transport._tempDataLen or transport.offset != len(transport.dataBuffer):
            chunk = client.recv(1 << 20)
            received += len(chunk)
            tail = (tail + chunk)[-3:]
            assert transport.doWrite() is None
        while tail != b"END":
            chunk = client.recv(1 << 20)
            received += len(chunk)
            tail = (tail + chunk)[-3:]
        assert received > expected
        assert transport not in reactor.getWriters()


def test_large_writes_go_through_twisteds_buffer() -> None:
    """A write larger than SEND_LIMIT is buffered whole, as by Twisted."""
    transport, client, reactor = connected()
    with client:
        transport.write(b"y" * (transport.SEND_LIMIT + 1))
        assert transport._tempDataLen == transport.SEND_LIMIT + 1
        assert transport in reactor.getWriters()


def test_a_reset_peer_is_lost_the_usual_way() -> None:
    """send() failing with a reset buffers the bytes; doWrite then reports
    the connection lost, exactly as for a buffered write."""
    transport, client, reactor = connected()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST
    for _ in range(100):  # the first send after an RST may still succeed
        transport.write(b"late")
        if transport._tempDataLen:
            break
    assert transport._tempDataLen > 0
    assert transport.doWrite() is main.CONNECTION_LOST


def test_close_if_flushed_closes_at_once() -> None:
    """Nothing buffered: FIN now, connectionLost(ConnectionDone) now, no
    reactor registrations left."""
    protocol = Recorder()
    transport, client, reactor = connected(protocol)
    with client:
        transport.startReading()
        transport.write(b"bye")
        assert close_if_flushed(transport) is True
        assert [f.type for f in protocol.lost] == [ConnectionDone]
        assert transport not in reactor.getReaders() and transport not in reactor.getWriters()
        assert recv_exactly(client, 3) == b"bye" and client.recv(10) == b""
        assert close_if_flushed(transport) is False  # closed already


def test_close_if_flushed_leaves_buffered_and_produced_connections_to_twisted() -> None:
    """Bytes still buffered, a producer registered, a half-close under way or
    TLS started: nothing happens, the caller closes the Twisted way."""
    transport, client, _ = connected()
    with client:
        fill_kernel_buffers(transport)
        assert close_if_flushed(transport) is False
        assert transport.connected

    transport, client, _ = connected()
    with client:
        transport.registerProducer(Protocol(), True)  # type: ignore[arg-type]
        assert close_if_flushed(transport) is False
        transport.unregisterProducer()
        transport.loseWriteConnection()
        assert close_if_flushed(transport) is False

    transport, client, _ = connected()
    with client:
        transport.TLS = True  # what startTLS sets
        assert close_if_flushed(transport) is False
        assert transport.connected


def test_close_if_flushed_needs_the_connection_itself() -> None:
    """A wrapper (TLS is one) forwards attributes to the connection under it;
    only the connection itself may be closed this way."""
    inner = Protocol()
    wrapper = ProtocolWrapper(WrappingFactory(Factory()), inner)
    transport, client, _ = connected(wrapper)
    with client:
        assert close_if_flushed(inner.transport) is False
        assert transport.connected
    assert close_if_flushed(StringTransport()) is False


@pytest.mark.parametrize("data", [b"", bytearray(b"abc")])
def test_other_writes_are_twisteds(data: Any) -> None:
    """Empty and non-bytes writes take Twisted's own path (and its checks)."""
    transport, client, _ = connected()
    with client:
        if isinstance(data, bytes):
            transport.write(data)
            assert transport._tempDataLen == 0
        else:
            with pytest.raises(TypeError):
                transport.write(data)


def test_log_prefix_is_twisteds() -> None:
    """The log prefix of a connection is what Twisted would give it: the
    protocol's class name, or the protocol's own logPrefix() if it has one."""
    class Named(Protocol):
        def logPrefix(self) -> str:
            return "named"

    for protocol, prefix in ((Recorder(), "Recorder"), (Named(), "named")):
        transport, client, _ = connected(protocol)
        with client:
            assert tcp.Server._getLogPrefix(transport, protocol) == prefix  # Twisted's answer
            assert transport.logstr.split(",")[0] == prefix


class HalfCloseRecorder(Recorder):
    """Records writeConnectionLost (a half-close aware protocol)."""

    write_lost = 0

    def writeConnectionLost(self) -> None:
        self.write_lost += 1

    def readConnectionLost(self) -> None:
        pass


def test_close_writing_if_flushed_half_closes_at_once() -> None:
    """Nothing buffered: FIN now and writeConnectionLost now, reading goes on;
    the connection then closes at once too (its write side is done)."""
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from zope.interface import directlyProvides

    protocol = HalfCloseRecorder()
    directlyProvides(protocol, IHalfCloseableProtocol)
    transport, client, reactor = connected(protocol)
    with client:
        transport.startReading()
        transport.write(b"last")
        assert close_writing_if_flushed(transport) is True
        assert protocol.write_lost == 1 and protocol.lost == []
        assert recv_exactly(client, 4) == b"last" and client.recv(10) == b""
        assert transport in reactor.getReaders() and transport not in reactor.getWriters()
        client.sendall(b"still read")
        assert close_writing_if_flushed(transport) is False  # done already
        assert close_if_flushed(transport) is True
        assert [f.type for f in protocol.lost] == [ConnectionDone]


def test_close_writing_if_flushed_leaves_buffered_and_produced_connections_to_twisted() -> None:
    """Bytes still buffered or a producer registered: nothing happens; a
    transport that is not a Connection is never touched."""
    transport, client, _ = connected()
    with client:
        fill_kernel_buffers(transport)
        assert close_writing_if_flushed(transport) is False
        assert not transport._writeDisconnecting
    transport, client, _ = connected()
    with client:
        transport.registerProducer(Protocol(), True)  # type: ignore[arg-type]
        assert close_writing_if_flushed(transport) is False
    assert close_writing_if_flushed(StringTransport()) is False

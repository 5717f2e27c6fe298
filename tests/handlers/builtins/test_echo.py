"""Tests for superd.handlers.builtins.echo: RFC 862 echo with back-pressure and half-close."""

from __future__ import annotations

import socket
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.python.failure import Failure

from superd.handlers.builtins.base import LINGER_TIMEOUT
from superd.handlers.builtins.echo import EchoStream, echo_reply
from superd.net.bare import BareConnection
from superd.net.connection import Connection
from tests.handlers.builtins.conftest import (
    PushBackTransport,
    make_runtime,
    make_service,
    make_session,
)
from tests.net.test_bare import served
from tests.net.test_connection import connected


def connect() -> tuple[EchoStream, PushBackTransport]:
    runtime = make_runtime()
    proto = EchoStream(make_service("echo"), runtime, make_session(runtime))
    transport = PushBackTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_echoes_bytes_exactly() -> None:
    """Every byte, including NUL, CR, LF and non-ASCII, comes back unchanged and in order."""
    proto, transport = connect()
    chunks = [b"hello\r\n", b"\x00\xff\x7f", bytes(range(256))]
    for chunk in chunks:
        proto.dataReceived(chunk)
    assert transport.value() == b"".join(chunks)


def test_stops_reading_when_client_does_not_read() -> None:
    """When the write buffer is full, echo stops reading; it resumes once it drains."""
    proto, transport = connect()
    assert transport.producer is proto and transport.streaming
    proto.dataReceived(b"x" * (transport.bufferSize + 1))
    assert transport.producerState == "paused"  # reading from the client stopped
    assert transport.drain() == b"x" * (transport.bufferSize + 1)
    assert transport.producerState == "producing"


def test_half_close_flushes_then_closes() -> None:
    """Client EOF on its write side: the pending echo is flushed, then the connection closes."""
    proto, transport = connect()
    assert IHalfCloseableProtocol.providedBy(proto)
    proto.dataReceived(b"last words")
    proto.readConnectionLost()
    assert transport.value() == b"last words"
    assert transport.disconnecting
    assert transport.producer is None  # else the close would wait for ever
    proto.connectionLost(Failure(ConnectionDone()))
    assert proto.session.ended
    assert proto.clock.getDelayedCalls() == []


def test_half_closed_client_that_never_reads_is_aborted() -> None:
    """A client that half-closes but never reads the rest is aborted after the linger time."""
    proto, transport = connect()
    proto.dataReceived(b"y" * 1000)
    proto.readConnectionLost()
    proto.clock.advance(LINGER_TIMEOUT - 1)
    assert not transport.aborted
    proto.clock.advance(1)
    assert transport.aborted


def test_client_that_stops_reading_is_closed() -> None:
    """Client shut down its read side (echoes can no longer be delivered):
    echo closes the connection rather than read input it cannot answer."""
    proto, transport = connect()
    proto.writeConnectionLost()
    assert transport.disconnecting


def test_reset_mid_stream_ends_session() -> None:
    """A reset ends the session once; nothing is left scheduled."""
    proto, _ = connect()
    proto.dataReceived(b"partial")
    proto.connectionLost(Failure(ConnectionLost("reset")))
    assert proto.session.ended
    assert proto.clock.getDelayedCalls() == []


def test_datagram_reply_is_the_datagram() -> None:
    """The UDP echo reply is the datagram itself."""
    assert echo_reply(b"\x00ping\xff") == b"\x00ping\xff"



#: Most bytes one Twisted TCP read hands to dataReceived.
READ_SIZE = 65536


def deliver(proto: EchoStream, transport: PushBackTransport, kernel: bytearray) -> None:
    """Hand queued client bytes to echo, one read at a time, while it is reading."""
    while kernel and transport.producerState == "producing":
        chunk = bytes(kernel[:READ_SIZE])
        del kernel[:READ_SIZE]
        proto.dataReceived(chunk)


def step_bytes(index: int, size: int) -> bytes:
    """``size`` bytes that differ from step to step, so reordering would show."""
    start = index % 256
    return (bytes(range(256)) * (size // 256 + 2))[start:start + size]


@given(st.lists(st.tuples(st.integers(0, 200_000), st.booleans()), max_size=30))
@settings(max_examples=60, deadline=None)
def test_echo_is_exact_and_bounded_under_any_read_pattern(
        steps: list[tuple[int, bool]]) -> None:
    """
    Whatever the client sends and whenever it reads, it gets back exactly
    what it sent, and superd's unsent buffer never holds more than the
    transport's limit plus one read (the rest waits in the kernel).
    """
    sent = [step_bytes(i, size) for i, (size, _) in enumerate(steps)]
    proto, transport = connect()
    kernel, received = bytearray(), bytearray()
    for data, (_, client_reads) in zip(sent, steps, strict=True):
        kernel += data
        deliver(proto, transport, kernel)
        if client_reads:
            received += transport.drain()
    while kernel or transport.value():
        received += transport.drain()
        deliver(proto, transport, kernel)
    assert bytes(received) == b"".join(sent)
    assert transport.high_water <= transport.bufferSize + READ_SIZE


def connect_real() -> tuple[EchoStream, Connection, socket.socket, Any]:
    """An echo on superd's own TCP transport over a real loopback connection."""
    runtime = make_runtime()
    proto = EchoStream(make_service("echo"), runtime, make_session(runtime))
    transport, client, reactor = connected(proto)
    transport.startReading()
    return proto, transport, client, reactor


def test_short_echo_on_superds_transport_registers_no_producer() -> None:
    """Writes that leave nothing buffered need no back-pressure: no producer,
    and the client's EOF closes the connection at once, with no linger timer."""
    proto, transport, client, reactor = connect_real()
    with client:
        proto.dataReceived(b"ping")
        assert transport.producer is None
        assert client.recv(10) == b"ping"
        proto.readConnectionLost()
        assert proto.session.ended and client.recv(10) == b""
        assert proto.clock.getDelayedCalls() == []


def test_client_that_does_not_read_is_paused_on_superds_transport() -> None:
    """Once the kernel refuses bytes, echo registers as the producer, and
    reading from the client stops when Twisted's buffer is full."""
    proto, transport, client, reactor = connect_real()
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    with client:
        block = b"z" * 65536
        for _ in range(1000):
            proto.dataReceived(block)
            if transport not in reactor.getReaders():
                break
        assert transport.producer is proto
        assert transport not in reactor.getReaders()  # paused: reading stopped
        assert transport.buffered()
        proto.readConnectionLost()  # the client's EOF: flush, then close
        assert transport.producer is None and transport.disconnecting


def test_echo_served_on_the_bare_descriptor() -> None:
    """A TakingPort serves echo on the bare descriptor: the echo comes back
    with no producer registered, the client's EOF ends the session and
    closes the connection at once; a client that stops reading moves it onto
    superd's ordinary transport, where echo pauses reading as usual."""
    runtime = make_runtime()
    protos = [EchoStream(make_service("echo"), runtime, make_session(runtime))
              for _ in range(2)]
    for proto in protos:
        _, transport, client, reactor, port = served(proto)  # type: ignore[arg-type]
        assert isinstance(transport, BareConnection)
        with client:
            if proto is protos[0]:
                client.sendall(b"ping")
                transport.doRead()
                assert client.recv(10) == b"ping" and proto.transport is transport
                client.shutdown(socket.SHUT_WR)
                transport.doRead()
                assert proto.session.ended and client.recv(10) == b""
                assert proto.clock.getDelayedCalls() == []
                continue
            block = b"z" * 65536
            for _ in range(1000):
                proto.dataReceived(block)
                if proto.transport not in reactor.getReaders():
                    break
            moved = proto.transport
            assert isinstance(moved, Connection) and moved.producer is proto
            assert moved.buffered() and moved not in reactor.getReaders()
            moved.abortConnection()
            reactor.advance(0)
            assert proto.session.ended
        port.connectionLost(None)  # type: ignore[arg-type]

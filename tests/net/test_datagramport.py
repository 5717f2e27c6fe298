"""
Unit tests of ``superd.net.datagramport``: a bounded number of datagrams per
wake-up on a real loopback socket (the reactor is a fake: each test calls
``doRead`` itself), what ``udp.Port.doRead`` also does (IPv6 addresses cut to
host and port, a protocol's exception logged), and the Twisted internals the
port relies on.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from errno import EIO
from typing import Any

import pytest
from twisted.internet import udp
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock

from superd.net.datagramport import (
    MAX_DATAGRAMS_PER_WAKE,
    DatagramPort,
    adopt_datagram,
    listen_datagram_port,
)


class Recorder(DatagramProtocol):
    """Keeps every datagram; raises on ``b"boom"``."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, addr))
        if datagram == b"boom":
            raise RuntimeError("a broken protocol")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def port(recorder: Recorder) -> Iterator[DatagramPort]:
    listening = listen_datagram_port(MemoryReactorClock(), 0, recorder, "127.0.0.1", 65535)
    yield listening
    listening.stopListening()


def send(port: udp.Port, *datagrams: bytes, host: str = "127.0.0.1") -> socket.socket:
    """A client socket that sent ``datagrams`` to ``port`` (all queued on return)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    client = socket.socket(family, socket.SOCK_DGRAM)
    client.bind((host, 0))
    for datagram in datagrams:
        client.sendto(datagram, (host, port.getHost().port))
    return client


def test_reads_at_most_the_cap_per_wake_up(port: DatagramPort, recorder: Recorder) -> None:
    """Empty datagrams, more than the cap: one wake-up takes exactly the cap,
    the next the rest, and a wake-up with nothing queued takes nothing."""
    queued = 2 * MAX_DATAGRAMS_PER_WAKE - 1
    with send(port, *[b""] * queued) as client:
        port.doRead()
        assert len(recorder.received) == MAX_DATAGRAMS_PER_WAKE
        port.doRead()
        assert len(recorder.received) == queued
        port.doRead()
        assert len(recorder.received) == queued
        assert recorder.received[0] == (b"", client.getsockname())


def test_a_protocol_exception_is_logged_and_the_turn_goes_on(
        port: DatagramPort, recorder: Recorder, log_events: list[dict[str, Any]]) -> None:
    """As udp.Port: the datagram after the one that raised is still delivered."""
    with send(port, b"boom", b"next"):
        port.doRead()
    assert [data for data, _ in recorder.received] == [b"boom", b"next"]
    (logged,) = [e for e in log_events if e.get("failure") is not None]
    assert logged["failure"].check(RuntimeError)


def test_ipv6_addresses_are_host_and_port(recorder: Recorder) -> None:
    """As udp.Port: flow info and scope id are cut from an IPv6 source."""
    try:
        listening = listen_datagram_port(MemoryReactorClock(), 0, recorder, "::1", 65535)
    except Exception as e:  # a host without IPv6
        pytest.skip(f"no IPv6 loopback: {e}")
    try:
        with send(listening, b"six", host="::1") as client:
            listening.doRead()
            assert recorder.received == [(b"six", client.getsockname()[:2])]
    finally:
        listening.stopListening()


class FailingSocket:
    """A socket whose every recvfrom fails with ``errno``."""

    def __init__(self, errno: int) -> None:
        self.errno = errno

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        raise OSError(self.errno, "scripted")


def test_an_unexpected_receive_error_is_raised_to_the_reactor(port: DatagramPort) -> None:
    """Not "nothing queued": the reactor sees the error (and drops the port),
    as with udp.Port."""
    real, port.socket = port.socket, FailingSocket(EIO)
    try:
        with pytest.raises(OSError):
            port.doRead()
    finally:
        port.socket = real


def test_an_adopted_socket_is_a_bounded_port(recorder: Recorder) -> None:
    """adopt_datagram keeps its own duplicate and bounds its reads too."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
        bound.bind(("127.0.0.1", 0))
        bound.setblocking(False)
        adopted = adopt_datagram(MemoryReactorClock(), bound.fileno(), socket.AF_INET,
                                 recorder, 65535)
    try:
        assert isinstance(adopted, DatagramPort)
        with send(adopted, *[b"x"] * (MAX_DATAGRAMS_PER_WAKE + 1)):
            adopted.doRead()
        assert len(recorder.received) == MAX_DATAGRAMS_PER_WAKE
    finally:
        adopted.stopListening()


def test_twisted_internals_it_relies_on_are_there(recorder: Recorder) -> None:
    """DatagramPort replaces udp.Port.doRead and adopts through a private
    classmethod; a Twisted upgrade that changes either must fail here.

    If Twisted's own doRead stops draining a queue of empty datagrams in one
    call, it bounds its reads some other way: compare it with
    DatagramPort.doRead and drop the override if it now counts."""
    assert udp.Port.maxThroughput == 256 * 1024
    assert "_fromListeningDescriptor" in vars(udp.Port)
    plain = udp.Port(0, recorder, "127.0.0.1", 65535, MemoryReactorClock())
    plain.startListening()
    try:
        with send(plain, *[b""] * (MAX_DATAGRAMS_PER_WAKE * 2)):
            plain.doRead()
        assert len(recorder.received) == MAX_DATAGRAMS_PER_WAKE * 2
        assert {"socket", "maxPacketSize", "protocol", "addressFamily"} <= set(vars(plain))
    finally:
        plain.stopListening()

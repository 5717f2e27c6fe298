"""
Unit tests of ``superd.handlers.tcpmux``: the peeking line reader on a real socket
pair (nothing after the newline is consumed, bounded memory), and the
protocol over a string transport (HELP, not found, +Go with the rest of the
data passed on, the line limit and the line timeout).
"""

from __future__ import annotations

import socket
from typing import Any, Optional

from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from superd.config.model import Location, ServiceConfig, SocketType
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.handlers.tcpmux import LINE_TIMEOUT, MAX_LINE, LinePeeker, TcpmuxHandler, TcpmuxProtocol


def peek(sock: socket.socket) -> tuple[LinePeeker, list[Optional[bytes]]]:
    results: list[Optional[bytes]] = []
    return LinePeeker(sock, results.append), results


def test_peeker_leaves_the_rest_queued(socket_pair: tuple[socket.socket, socket.socket]) -> None:
    """The line is consumed up to its newline; what follows stays in the socket."""
    ours, theirs = socket_pair
    peeker, results = peek(ours)
    theirs.sendall(b"myp")
    peeker.doRead()
    assert results == []
    theirs.sendall(b"lus\r\nafter the line")
    peeker.doRead()
    assert results == [b"myplus\r\n"]
    assert ours.recv(100) == b"after the line"


def test_peeker_bounds_the_line(socket_pair: tuple[socket.socket, socket.socket]) -> None:
    """More than MAX_LINE bytes without a newline ends with None, having read MAX_LINE."""
    ours, theirs = socket_pair
    peeker, results = peek(ours)
    theirs.sendall(b"a" * (MAX_LINE + 500))
    for _ in range(3):
        if not results:
            peeker.doRead()
    assert results == [None]
    assert len(ours.recv(10_000)) == 500


def test_peeker_eof(socket_pair: tuple[socket.socket, socket.socket]) -> None:
    """EOF before a newline ends with None."""
    ours, theirs = socket_pair
    peeker, results = peek(ours)
    theirs.sendall(b"half")
    theirs.shutdown(socket.SHUT_WR)
    peeker.doRead()
    peeker.doRead()
    assert results == [None]


class Recording(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.made = False

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class AdmitAll:
    def __init__(self) -> None:
        self.built: list[Recording] = []

    def buildProtocol(self, addr: Any) -> Recording:
        self.built.append(Recording())
        return self.built[-1]


def service(name: str, *types: str) -> ServiceConfig:
    return ServiceConfig(name=name, id=name, location=Location("conf/x", 1),
                         socket_type=SocketType.STREAM, protocol="tcp", wait=False, port=None,
                         type=frozenset(types))


def mux() -> tuple[TcpmuxProtocol, StringTransport, MemoryReactorClock, AdmitAll]:
    reactor = MemoryReactorClock()
    handler = TcpmuxHandler(service("tcpmux", "INTERNAL"), Runtime(reactor=reactor), ())
    admit = AdmitAll()
    handler._clients = {"myplus": (service("myplus", "TCPMUXPLUS"), admit),
                        "plain": (service("plain", "TCPMUX"), admit)}
    protocol = handler.protocol_for(Session("tcpmux", Peer("10.0.0.1", 9), None, 0.0))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, reactor, admit


def test_help_lists_mux_services() -> None:
    """HELP (any case) lists each client service on its own CRLF line, then closes."""
    protocol, transport, _, _ = mux()
    protocol.dataReceived(b"Help\r\n")
    assert transport.value() == b"myplus\r\nplain\r\n" and transport.disconnecting


def test_unknown_name() -> None:
    """An unknown name: the RFC reply with CRLF and no NUL, then close."""
    protocol, transport, _, _ = mux()
    protocol.dataReceived(b"nosuch\n")
    assert transport.value() == b"-Service name not found\r\n" and transport.disconnecting


def test_plus_go_and_rest_handed_over() -> None:
    """TCPMUXPLUS gets +Go; the selected protocol owns the transport and gets the rest."""
    protocol, transport, _, admit = mux()
    protocol.dataReceived(b"MyPlus\r\nfirst bytes")
    chosen = admit.built[0]
    assert transport.value() == b"+Go\r\n"
    assert chosen.made and chosen.data == b"first bytes"
    assert transport.protocol is chosen and protocol.session.ended  # type: ignore[attr-defined]


def test_plain_mux_sends_nothing() -> None:
    """A TCPMUX (not PLUS) service speaks first itself: superd writes nothing."""
    protocol, transport, _, admit = mux()
    protocol.dataReceived(b"plain\r\n")
    assert transport.value() == b"" and admit.built[0].made


def test_line_limit_and_timeout() -> None:
    """A line longer than MAX_LINE is refused; a silent client is aborted at the timeout."""
    protocol, transport, _, _ = mux()
    protocol.dataReceived(b"a" * MAX_LINE)
    assert transport.disconnecting and transport.value() == b""
    protocol, transport, reactor, _ = mux()
    reactor.advance(LINE_TIMEOUT + 1)
    assert transport.disconnected


def test_peeker_passes_writes_to_the_connection(
        socket_pair: tuple[socket.socket, socket.socket]) -> None:
    """Write readiness reported to the peeker (one object per fd in epoll) reaches the transport."""
    class Writer:
        writes = 0

        def doWrite(self) -> None:
            self.writes += 1

    writer = Writer()
    peeker = LinePeeker(socket_pair[0], lambda line: None, writer)
    peeker.doWrite()
    assert writer.writes == 1

"""
Tests for ``superd.net.proxyreader``: a PROXY header read off a real socket
(a socket pair), in as many segments as it comes, and never a byte past its
end -- what follows stays queued in the kernel for whoever serves the
connection next.
"""

from __future__ import annotations

import socket

from twisted.internet.interfaces import IReadDescriptor
from zope.interface.verify import verifyObject

from superd.net.proxyreader import HeaderReader, Outcome
from superd.net.proxywire import V2_SIGNATURE, HeaderError

Pair = tuple[socket.socket, socket.socket]
LINE = b"PROXY TCP4 192.0.2.1 198.51.100.7 1234 443\r\n"


def reader_on(sock: socket.socket, versions: frozenset[int] = frozenset({1, 2}),
              ) -> tuple[HeaderReader, list[Outcome]]:
    outcomes: list[Outcome] = []
    return HeaderReader(sock, versions, outcomes.append), outcomes


def test_is_a_read_descriptor(socket_pair: Pair) -> None:
    """The reactor can poll it in the connection's place."""
    reader, _ = reader_on(socket_pair[0])
    assert verifyObject(IReadDescriptor, reader)
    assert reader.fileno() == socket_pair[0].fileno()


def test_header_then_data_leaves_data_queued(socket_pair: Pair) -> None:
    """Header and first bytes in one segment: only the header is taken."""
    ours, theirs = socket_pair
    reader, outcomes = reader_on(ours)
    theirs.sendall(LINE + b"hello")
    reader.doRead()
    assert outcomes == [LINE]
    assert ours.recv(100) == b"hello"


def test_v1_split_over_segments(socket_pair: Pair) -> None:
    """A v1 header sent a few bytes at a time is read as it comes."""
    ours, theirs = socket_pair
    reader, outcomes = reader_on(ours)
    for start in range(0, len(LINE), 7):
        assert outcomes == []
        theirs.sendall(LINE[start:start + 7])
        reader.doRead()
    theirs.sendall(b"after")
    reader.doRead()  # done already: reads nothing more
    assert outcomes == [LINE]
    assert ours.recv(100) == b"after"


def test_v2_split_inside_signature_and_length(socket_pair: Pair) -> None:
    """A v2 header cut inside its signature and its length field."""
    ours, theirs = socket_pair
    header = V2_SIGNATURE + b"\x21\x11\x00\x0c" + b"\x7f\0\0\x02" * 2 + b"\0\x01\0\x02"
    reader, outcomes = reader_on(ours)
    for piece in (header[:5], header[5:15], header[15:20], header[20:] + b"\x16\x03"):
        theirs.sendall(piece)
        reader.doRead()
    assert outcomes == [header]
    assert ours.recv(10) == b"\x16\x03"


def test_nothing_queued_waits(socket_pair: Pair) -> None:
    """A spurious wake-up with nothing to read changes nothing."""
    reader, outcomes = reader_on(socket_pair[0])
    reader.doRead()
    assert outcomes == []


def test_end_of_file_before_header(socket_pair: Pair) -> None:
    """The peer closing mid-header is an outcome, reported once."""
    ours, theirs = socket_pair
    reader, outcomes = reader_on(ours)
    theirs.sendall(LINE[:10])
    reader.doRead()
    theirs.shutdown(socket.SHUT_WR)
    reader.doRead()
    reader.connectionLost(None)  # type: ignore[arg-type]
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], HeaderError)
    assert str(outcomes[0]) == "connection closed before the header ended"


def test_oversized_v1_refused_at_limit(socket_pair: Pair) -> None:
    """A v1 line with no CRLF in 107 bytes is refused without reading on."""
    ours, theirs = socket_pair
    reader, outcomes = reader_on(ours)
    theirs.sendall(b"PROXY TCP4 " + b"9" * 5000)
    reader.doRead()
    assert isinstance(outcomes[0], HeaderError)
    assert "longer than 107" in str(outcomes[0])


def test_wrong_bytes_refused_without_taking_them(socket_pair: Pair) -> None:
    """A client that talks first (no header) is refused; nothing was consumed."""
    ours, theirs = socket_pair
    reader, outcomes = reader_on(ours)
    theirs.sendall(b"GET / HTTP/1.0\r\n\r\n")
    reader.doRead()
    assert isinstance(outcomes[0], HeaderError)
    assert ours.recv(100) == b"GET / HTTP/1.0\r\n\r\n"


def test_read_error_reported(socket_pair: Pair) -> None:
    """A socket error (a reset) is an outcome, not an exception."""
    ours, theirs = socket_pair
    reader, outcomes = reader_on(ours)
    ours.close()
    reader.doRead()
    assert isinstance(outcomes[0], HeaderError)
    assert str(outcomes[0]).startswith("cannot read the header")

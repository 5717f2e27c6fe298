"""Tests for superd.handlers.builtins.chargen: the RFC 864 pattern, stream and datagram."""

from __future__ import annotations

from typing import Optional

from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from superd.handlers.builtins.chargen import (
    CHUNK,
    CYCLE,
    ChargenRing,
    ChargenStream,
    chargen_line,
)
from tests.handlers.builtins.conftest import (
    PushBackTransport,
    make_runtime,
    make_service,
    make_session,
)

# RFC 864's own example starts exactly like this (note the leading space).
GOLDEN_FIRST_LINES = (
    b' !"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n'
    b'!"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n'
    b'"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n'
)
# Line 94 starts with the last character and wraps round to space.
GOLDEN_LINE_94 = (
    b'~ !"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdef\r\n'
)


def expected_line(index: int) -> bytes:
    """RFC 864 line ``index`` computed character by character (independent model)."""
    return bytes(0x20 + (index + k) % 95 for k in range(72)) + b"\r\n"


def connect(transport: Optional[StringTransport] = None) -> tuple[ChargenStream, StringTransport]:
    runtime = make_runtime()
    proto = ChargenStream(make_service("chargen"), runtime, make_session(runtime))
    transport = transport if transport is not None else PushBackTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_first_three_lines_are_rfc864_bytes() -> None:
    """The stream begins with RFC 864's first three lines, space included."""
    _, transport = connect()
    assert transport.value()[:3 * 74] == GOLDEN_FIRST_LINES


def test_cycle_is_95_lines_and_line_95_is_line_0() -> None:
    """The pattern repeats every 95 lines of 74 bytes; line 94 wraps round the ring."""
    assert len(CYCLE) == 95 * 74 == 7030
    assert chargen_line(94) == GOLDEN_LINE_94
    assert chargen_line(95) == chargen_line(0)
    assert b"".join(expected_line(i) for i in range(95)) == CYCLE


def test_stream_is_the_pattern_across_chunks() -> None:
    """Everything written, across chunk boundaries, is the unbroken line sequence."""
    _, transport = connect()
    data = transport.value()
    assert len(data) >= 2 * len(CHUNK)
    lines = [data[i:i + 74] for i in range(0, len(data) - len(data) % 74, 74)]
    assert lines == [expected_line(i) for i in range(len(lines))]


def test_chunk_is_whole_cycles_near_64k() -> None:
    """Each write is a large block of whole cycles, so every write starts on line 0."""
    assert len(CHUNK) % len(CYCLE) == 0
    assert 60 * 1024 <= len(CHUNK) <= 64 * 1024


def test_production_stops_when_transport_pushes_back() -> None:
    """Once the transport's buffer is full nothing more is written, however long we wait."""
    proto, transport = connect()
    assert isinstance(transport, PushBackTransport)
    assert transport.consumer_paused
    written = len(transport.value())
    assert written <= transport.bufferSize + len(CHUNK)
    proto.clock.advance(3600)
    assert len(transport.value()) == written


def test_production_resumes_when_client_reads_and_memory_stays_bounded() -> None:
    """Each time the client reads, production resumes; the unsent buffer never grows."""
    _, transport = connect()
    assert isinstance(transport, PushBackTransport)
    received = 0
    for _ in range(50):
        received += len(transport.drain())
    assert received >= 50 * transport.bufferSize
    assert transport.high_water <= transport.bufferSize + len(CHUNK)


def test_registers_as_streaming_producer() -> None:
    """Chargen is a push producer registered with its transport (so TCP can pause it)."""
    proto, transport = connect()
    assert IPushProducer.providedBy(proto)
    assert transport.producer is proto and transport.streaming is True


def test_consumer_without_back_pressure_gets_bounded_turns() -> None:
    """A consumer that never pauses gets a few chunks per reactor turn, not a loop."""
    proto, transport = connect(StringTransport())
    first_turn = len(transport.value())
    assert first_turn == 4 * len(CHUNK)
    # The next turn waits for the reactor (Clock.advance(0) would run every
    # turn, scheduled or not, in one go: run just the one that is pending).
    (next_turn,) = proto.clock.getDelayedCalls()
    assert next_turn.getTime() == proto.clock.seconds()
    run_turn = next_turn.func
    next_turn.cancel()
    run_turn()
    assert len(transport.value()) == 2 * first_turn
    proto.connectionLost(Failure(ConnectionLost()))
    assert proto.clock.getDelayedCalls() == []


def test_input_is_never_read() -> None:
    """Chargen stops the transport reading at once; stray input changes nothing."""
    proto, transport = connect()
    assert transport.producerState == "paused"
    before = transport.value()
    proto.dataReceived(b"\x00garbage\xff" * 10000)
    assert transport.value() == before


def test_half_close_keeps_sending() -> None:
    """After the client shuts its write side, the stream goes on (RFC 864)."""
    proto, transport = connect()
    assert isinstance(transport, PushBackTransport)
    assert IHalfCloseableProtocol.providedBy(proto)
    proto.readConnectionLost()
    transport.drain()
    assert len(transport.value()) > 0
    assert not transport.disconnecting


def test_client_that_stops_reading_is_closed() -> None:
    """Client shut down its read side: nothing more can be delivered, so the
    stream ends and the connection closes."""
    proto, transport = connect()
    proto.writeConnectionLost()
    assert transport.disconnecting


def test_reset_mid_stream_stops_everything_and_ends_session() -> None:
    """A client reset ends the session, cancels timers and later resumes do nothing."""
    proto, transport = connect(StringTransport())
    proto.connectionLost(Failure(ConnectionLost("reset by peer")))
    assert proto.session.ended
    assert proto.clock.getDelayedCalls() == []
    written = len(transport.value())
    proto.resumeProducing()
    assert len(transport.value()) == written


def test_datagram_lines_rotate_and_persist() -> None:
    """Each datagram is one 74-byte line; the ring position persists and wraps at 95."""
    ring = ChargenRing()
    replies = [ring.reply(b"anything") for _ in range(96)]
    assert replies[:3] == [GOLDEN_FIRST_LINES[i * 74:(i + 1) * 74] for i in range(3)]
    assert all(len(r) == 74 for r in replies)
    assert replies[94] == GOLDEN_LINE_94
    assert replies[95] == replies[0]


def test_datagram_rings_are_independent() -> None:
    """Two services keep their own positions."""
    first, second = ChargenRing(), ChargenRing()
    first.reply(b"")
    assert second.reply(b"") == chargen_line(0)
    assert first.reply(b"") == chargen_line(1)

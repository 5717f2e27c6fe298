"""Tests for superd.handlers.builtins.discard: RFC 863 discard."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from superd.handlers.builtins.discard import DiscardStream, discard_reply
from tests.handlers.builtins.conftest import make_runtime, make_service, make_session


def test_reads_and_sends_nothing() -> None:
    """A megabyte of garbage produces no output and leaves the connection open."""
    runtime = make_runtime()
    proto = DiscardStream(make_service("discard"), runtime, make_session(runtime))
    transport = StringTransport()
    proto.makeConnection(transport)
    for _ in range(16):
        proto.dataReceived(b"\x00\xff garbage " * 6000)
    assert transport.value() == b""
    assert not transport.disconnecting


def test_client_eof_closes_and_ends_session() -> None:
    """Discard is not half-close aware, so Twisted closes at the client's EOF; the session ends."""
    runtime = make_runtime()
    proto = DiscardStream(make_service("discard"), runtime, make_session(runtime))
    assert not IHalfCloseableProtocol.providedBy(proto)
    proto.makeConnection(StringTransport())
    proto.connectionLost(Failure(ConnectionDone()))
    assert proto.session.ended


def test_datagram_has_no_reply() -> None:
    """UDP discard never replies."""
    assert discard_reply(b"anything") is None

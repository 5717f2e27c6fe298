"""
Tests of ``superd.handlers.redirect.BareRelayProtocol``: a relay to a plain
TCP upstream on bare descriptors, on real loopback sockets, accepted by a
``TakingPort`` and connected by ``superd.net.tcpconnect`` on a private epoll
reactor (never the global one) iterated by hand.  Bytes and half-close both
ways with no producer registered; a side that stops reading moves onto the
ordinary transport and stops the relay reading from the other side.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory

from superd.config.model import Extensions, Redirect, UpstreamTLS
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.handlers.redirect import BareRelayProtocol, RedirectHandler, RelayProtocol
from superd.net.bare import BareConnection
from superd.net.connection import Connection
from superd.net.takingport import TakingPort, listen_taking
from superd.net.tcpconnect import BareClientConnection
from tests.handlers.test_redirect import make_service


class Relaying(Factory):
    """Serves each accepted connection with the handler's relay."""

    def __init__(self, handler: RedirectHandler) -> None:
        self.handler = handler
        self.relays: list[RelayProtocol] = []
        self.sessions: list[Session] = []

    def take_connection(self, fd: int, address: Any, local: Any) -> Any:
        session = Session("relay", Peer(address[0], address[1]), None, 0.0)
        self.sessions.append(session)
        relay = self.handler.protocol_for(session)
        self.relays.append(relay)
        return relay


@attrs.define
class Served:
    reactor: EPollReactor
    relay: RelayProtocol
    session: Session
    client: socket.socket
    upstream: socket.socket

    def until(self, done: Any, rounds: int = 500) -> None:
        for _ in range(rounds):
            if done():
                return
            self.reactor.iterate(0.01)  # type: ignore[no-untyped-call]
        raise AssertionError("nothing happened")

    def recv(self, sock: socket.socket, size: int) -> bytes:
        """What ``sock`` receives, ``size`` bytes or up to EOF, the reactor
        running meanwhile."""
        sock.setblocking(False)
        got = b""
        for _ in range(500):
            try:
                data = sock.recv(size - len(got))
            except BlockingIOError:
                self.reactor.iterate(0.01)  # type: ignore[no-untyped-call]
                continue
            got += data
            if not data or len(got) == size:
                return got
        raise AssertionError(f"received only {got!r}")

    def drain(self, sock: socket.socket, expected: int) -> int:
        """Read ``sock`` (the reactor running) until ``expected`` bytes came; how
        many did."""
        sock.setblocking(False)
        received, deadline = 0, time.monotonic() + 20
        while received < expected and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                received += len(sock.recv(1 << 20))
            self.reactor.iterate(0)  # type: ignore[no-untyped-call]
        return received


@pytest.fixture
def served() -> Iterator[Served]:
    """A client relayed to an upstream socket the test holds."""
    reactor = EPollReactor()  # type: ignore[no-untyped-call]
    with socket.create_server(("127.0.0.1", 0)) as server:
        service = make_service(redirect=Redirect("127.0.0.1", server.getsockname()[1]),
                               extensions=Extensions(redirect_timeout=5.0))
        factory = Relaying(RedirectHandler(service, Runtime(reactor=reactor)))
        port: TakingPort = listen_taking(reactor, 0, factory, 50, "127.0.0.1")
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        try:
            for _ in range(500):
                if factory.relays and factory.relays[0].upstream is not None:
                    break
                reactor.iterate(0.01)  # type: ignore[no-untyped-call]
            upstream, _ = server.accept()
            upstream.settimeout(5)
            with client, upstream:
                yield Served(reactor, factory.relays[0], factory.sessions[0], client, upstream)
        finally:
            port.stopListening()
            reactor.removeAll()
            reactor._poller.close()


def test_a_plain_upstream_is_relayed_bare_without_producers(served: Served) -> None:
    """Both sides on bare descriptors, no producer registered: bytes and a
    half-close each way, then both closed and the session ended with the
    counts."""
    relay = served.relay
    assert isinstance(relay, BareRelayProtocol)
    client_side, upstream_side = relay.transport, relay.upstream.transport  # type: ignore[union-attr]
    assert isinstance(client_side, BareConnection)
    assert isinstance(upstream_side, BareClientConnection)
    assert not relay._client_fed and not relay._upstream_fed
    for fd in (client_side.fileno(), upstream_side.fileno()):
        with socket.socket(fileno=fd) as view:
            try:
                assert view.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            finally:
                view.detach()
    served.client.sendall(b"up")
    assert served.recv(served.upstream, 2) == b"up"
    served.upstream.sendall(b"down")
    assert served.recv(served.client, 4) == b"down"
    served.client.shutdown(socket.SHUT_WR)  # the client is done sending
    assert served.recv(served.upstream, 10) == b""  # ... and the upstream hears it
    served.upstream.sendall(b"answer")  # the answer still reaches the client
    assert served.recv(served.client, 6) == b"answer"
    served.upstream.close()
    served.until(lambda: served.session.ended)
    assert served.recv(served.client, 10) == b""
    assert (relay.inbound, relay.outbound) == (2, 10)
    assert not client_side.connected and not upstream_side.connected
    assert not [r for r in served.reactor.getReaders() if isinstance(r, BareConnection)]


def _fill(served: Served, block: bytes) -> int:
    """The upstream writes until the kernel takes no more: the relay paused
    reading it.  Returns how much was sent."""
    served.upstream.setblocking(False)
    sent = 0
    for _ in range(2000):
        with contextlib.suppress(BlockingIOError):
            sent += served.upstream.send(block)
        served.reactor.iterate(0)  # type: ignore[no-untyped-call]
        if served.relay.upstream.transport not in served.reactor.getReaders():  # type: ignore[union-attr]
            break
    return sent


def test_a_client_that_stops_reading_stops_reading_the_upstream(served: Served) -> None:
    """A client that does not read: the client side moves onto the ordinary
    transport with what the kernel did not take, the upstream becomes its
    producer and is paused (superd holds at most a buffer's worth), then
    resumed as the client reads; every byte arrives in order."""
    relay = served.relay
    block = bytes(range(256)) * 256
    sent = _fill(served, block)
    moved = relay.transport
    assert isinstance(moved, Connection) and relay._client_fed
    assert relay.upstream.transport not in served.reactor.getReaders()  # type: ignore[union-attr]
    held = len(moved.dataBuffer) + moved._tempDataLen
    assert 0 < held <= moved.bufferSize + len(block)
    received = served.drain(served.client, sent)
    assert received == sent == relay.outbound
    assert relay.upstream.transport in served.reactor.getReaders()  # type: ignore[union-attr]
    served.upstream.close()
    served.client.close()
    served.until(lambda: served.session.ended)


def test_an_upstream_that_stops_reading_stops_reading_the_client(served: Served) -> None:
    """The same the other way: the upstream side moves, the client is paused."""
    relay = served.relay
    served.client.setblocking(False)
    block = b"c" * 65536
    sent = 0
    for _ in range(2000):
        with contextlib.suppress(BlockingIOError):
            sent += served.client.send(block)
        served.reactor.iterate(0)  # type: ignore[no-untyped-call]
        if relay.transport not in served.reactor.getReaders():
            break
    upstream_side = relay.upstream.transport  # type: ignore[union-attr]
    assert isinstance(upstream_side, Connection) and relay._upstream_fed
    assert relay.transport not in served.reactor.getReaders()
    assert len(upstream_side.dataBuffer) + upstream_side._tempDataLen <= (
        upstream_side.bufferSize + len(block))
    received = served.drain(served.upstream, sent)
    assert received == sent == relay.inbound
    served.client.close()
    served.upstream.close()
    served.until(lambda: served.session.ended)


def test_a_tls_upstream_is_relayed_on_ordinary_transports() -> None:
    """Only a plain TCP upstream is relayed bare."""
    reactor = EPollReactor()  # type: ignore[no-untyped-call]
    try:
        runtime = Runtime(reactor=reactor)
        session = Session("relay", Peer("127.0.0.1", 1), None, 0.0)
        plain = RedirectHandler(make_service(), runtime).protocol_for(session)
        assert type(plain) is BareRelayProtocol
        tls = make_service(extensions=Extensions(redirect_tls=UpstreamTLS(name="localhost")))
        relay = RedirectHandler(tls, runtime).protocol_for(session)
        assert type(relay) is RelayProtocol and not getattr(type(relay), "serves_bare", False)
    finally:
        reactor._poller.close()


def test_a_client_gone_after_its_eof_ends_the_relay(served: Served) -> None:
    """A client that shut down writing, then closed: the relay no longer reads
    it, so only a write meets the error; it must still end the relay (and
    not go on reading an upstream that keeps sending, for ever)."""
    served.client.shutdown(socket.SHUT_WR)
    assert served.recv(served.upstream, 10) == b""
    served.client.close()
    served.upstream.setblocking(False)
    for _ in range(500):
        if served.session.ended:
            break
        with contextlib.suppress(BlockingIOError, ConnectionError):
            served.upstream.send(b"u" * 4096)
        served.reactor.iterate(0.01)  # type: ignore[no-untyped-call]
    assert served.session.ended
    assert not served.relay.transport.connected  # type: ignore[union-attr]

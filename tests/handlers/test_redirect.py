"""
Unit tests of ``superd.handlers.redirect`` with a memory reactor and string
transports: connect with a timeout, nothing read before the upstream is
there, bytes and counts both ways, half-close in both directions, producer
links, connect failures, the TRAFFIC line, and the bounded wait for a side
that no longer reads once the other is gone.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from superd.config.model import Extensions, Location, Redirect, ServiceConfig, SocketType
from superd.core.origin import COMMAND_PROXY, ProxyOrigin
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.handlers.redirect import LINGER, RedirectHandler, RelayProtocol, proxy_header
from superd.net.proxywire import parse_header


class HalfCloseTransport(StringTransport):
    """A string transport that records a half-close."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


def make_service(**kw: Any) -> ServiceConfig:
    values: dict[str, Any] = dict(
        name="relay", id="relay", location=Location("conf/relay", 1),
        socket_type=SocketType.STREAM, protocol="tcp", wait=False, port=8080,
        redirect=Redirect("127.0.0.1", 7), log_on_success=frozenset({"TRAFFIC", "EXIT"}),
        extensions=Extensions(redirect_timeout=3.0))
    values.update(kw)
    return ServiceConfig(**values)


@attrs.define
class Relay:
    reactor: MemoryReactorClock
    session: Session
    protocol: RelayProtocol
    client: HalfCloseTransport

    def connect_upstream(self) -> HalfCloseTransport:
        factory = self.reactor.tcpClients[0][2]
        upstream = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7))
        assert upstream is not None
        transport = HalfCloseTransport()
        upstream.makeConnection(transport)
        return transport

    @property
    def upstream(self) -> Any:
        assert self.protocol.upstream is not None
        return self.protocol.upstream


def start(service: ServiceConfig | None = None) -> Relay:
    reactor = MemoryReactorClock()
    runtime = Runtime(reactor=reactor)
    session = Session("relay", Peer("10.0.0.1", 4000), None, reactor.seconds())
    protocol = RedirectHandler(service or make_service(), runtime).protocol_for(session)
    client = HalfCloseTransport()
    protocol.makeConnection(client)
    return Relay(reactor, session, protocol, client)


def test_connects_with_timeout_and_holds_client_until_connected() -> None:
    """The upstream connect uses redirect_timeout; a client that sends before
    the upstream is there is paused, its bytes kept, until it is."""
    relay = start()
    host, port, _, timeout, _ = relay.reactor.tcpClients[0]
    assert (host, port, timeout) == ("127.0.0.1", 7, 3.0)
    assert relay.client.producerState == "producing"
    relay.protocol.dataReceived(b"early")
    assert relay.client.producerState == "paused"
    up = relay.connect_upstream()
    assert relay.client.producerState == "producing"
    assert up.value() == b"early"


class AtOnce:
    """A ``DirectTCP`` whose connect is over before it returns."""

    def __init__(self) -> None:
        self.transport = HalfCloseTransport()

    def connect_factory(self, factory: Any) -> Any:
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7))
        protocol.makeConnection(self.transport)
        return self


def test_client_leaving_after_an_immediate_connect_closes_the_upstream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An upstream connected before the connect call returned is the relay's
    upstream, closed when the client leaves (not an attempt to give up)."""
    at_once = AtOnce()
    monkeypatch.setattr("superd.handlers.redirect.DirectTCP.connect_factory",
                        lambda self, factory: at_once.connect_factory(factory))
    relay = start()
    relay.protocol.connectionLost(Failure(ConnectionDone()))
    assert at_once.transport.disconnecting


def test_a_quiet_client_is_never_paused() -> None:
    """A client that sends nothing while the upstream connects is left reading."""
    relay = start()
    relay.client.pauseProducing = None  # type: ignore[assignment,method-assign]
    relay.client.resumeProducing = None  # type: ignore[assignment,method-assign]
    relay.connect_upstream()
    relay.protocol.dataReceived(b"late")
    assert relay.upstream.transport.value() == b"late"


class ClosingTransport(HalfCloseTransport):
    """A transport whose close completes at once, as superd's own does."""

    def loseConnection(self) -> None:
        super().loseConnection()
        if not self.disconnected:
            self.disconnected = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


def test_both_sides_closing_at_once_leave_no_timer() -> None:
    """A side whose close ends the other's too gets no ``LINGER`` timer."""
    reactor = MemoryReactorClock()
    session = Session("relay", Peer("10.0.0.1", 4000), None, reactor.seconds())
    protocol = RedirectHandler(make_service(), Runtime(reactor=reactor)).protocol_for(session)
    client = ClosingTransport()
    client.protocol = protocol
    protocol.makeConnection(client)
    factory = reactor.tcpClients[0][2]
    upstream = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7))
    assert upstream is not None
    up = ClosingTransport()
    up.protocol = upstream
    upstream.makeConnection(up)
    upstream.readConnectionLost()  # type: ignore[attr-defined]
    protocol.readConnectionLost()
    assert session.ended and client.disconnected and up.disconnected
    assert not reactor.getDelayedCalls()


def test_bytes_flow_and_producers_are_linked() -> None:
    """Each side's transport is the other's streaming producer; bytes are counted."""
    relay = start()
    up = relay.connect_upstream()
    assert up.producer is relay.client and up.streaming
    assert relay.client.producer is up and relay.client.streaming
    relay.protocol.dataReceived(b"hello")
    relay.upstream.dataReceived(b"HELLO!")
    assert up.value() == b"hello" and relay.client.value() == b"HELLO!"
    assert (relay.protocol.inbound, relay.protocol.outbound) == (5, 6)


def test_half_close_both_ways_then_full_close(log_events: list[dict[str, Any]]) -> None:
    """Client EOF half-closes the upstream; upstream EOF half-closes the client; then both close."""
    relay = start()
    up = relay.connect_upstream()
    relay.protocol.dataReceived(b"abc")
    relay.protocol.readConnectionLost()
    assert up.write_closed and not up.disconnecting
    relay.upstream.dataReceived(b"ABC")
    relay.upstream.readConnectionLost()
    # Both directions are over: the client's FIN comes with its close.
    assert up.disconnecting and relay.client.disconnecting
    relay.protocol.connectionLost(Failure(Exception("done")))
    relay.upstream.connectionLost(Failure(Exception("done")))
    assert relay.session.ended
    lines = [e.get("xinetd_line") for e in log_events]
    assert "TRAFFIC: relay in=3(bytes) out=3(bytes)" in lines


def test_client_eof_before_upstream_is_carried_after_connect() -> None:
    """A client that half-closes while the connect is pending: the upstream gets the FIN."""
    relay = start()
    relay.protocol.readConnectionLost()
    up = relay.connect_upstream()
    assert up.write_closed


def test_connect_failure_closes_client_and_ends_session(log_events: list[dict[str, Any]]) -> None:
    """A refused upstream: redirect_failed is logged, the client closed, the session ended."""
    relay = start()
    factory = relay.reactor.tcpClients[0][2]
    factory.clientConnectionFailed(relay.reactor.connectors[0], Failure(ConnectionRefusedError()))
    assert relay.client.disconnecting
    assert [e for e in log_events if e.get("event") == "redirect_failed"]
    relay.protocol.connectionLost(Failure(Exception("closed")))
    assert relay.session.ended


def test_client_gone_while_connecting_cancels() -> None:
    """A client that leaves before the upstream answers cancels the connect attempt."""
    relay = start()
    relay.protocol.connectionLost(Failure(Exception("gone")))
    assert relay.reactor.connectors[0].stoppedConnecting
    assert relay.session.ended


def test_upstream_lost_closes_client() -> None:
    """An upstream that drops the connection makes the relay close the client."""
    relay = start()
    relay.connect_upstream()
    relay.upstream.connectionLost(Failure(Exception("reset")))
    assert relay.client.disconnecting and relay.client.producer is None


def test_bytes_before_the_upstream_are_kept() -> None:
    """Bytes delivered while connecting (a TLS layer's last read) reach the upstream first."""
    relay = start()
    relay.protocol.dataReceived(b"early ")
    up = relay.connect_upstream()
    relay.protocol.dataReceived(b"late")
    assert up.value() == b"early late" and relay.protocol.inbound == 10


def test_redirect_proxy_header_comes_first() -> None:
    """redirect_proxy = v1: the upstream reads the client's PROXY header
    (destination: superd's own address) before the bytes the client sent
    while the upstream was connecting."""
    relay = start(make_service(extensions=Extensions(redirect_proxy=1)))
    relay.protocol.dataReceived(b"early")
    up = relay.connect_upstream()
    own = relay.client.getHost()
    assert up.value() == f"PROXY TCP4 10.0.0.1 {own.host} 4000 {own.port}\r\nearly".encode()


def test_redirect_proxy_passes_on_a_proxied_client() -> None:
    """Behind a load balancer, the header sent upstream names the client it
    named and the address that client connected to."""
    front = Peer("2001:db8::80", 443)
    origin = ProxyOrigin(2, COMMAND_PROXY, Peer("127.0.0.1", 5), front)
    session = Session("relay", Peer("2001:db8::1", 4000), None, 0.0, origin=origin)
    header = proxy_header(2, session, StringTransport())
    parsed = parse_header(header, Peer("127.0.0.1", 5))
    assert parsed.client is not None and Peer.from_address(parsed.client) == session.peer
    assert parsed.origin.destination == front


def test_a_relay_superd_ends_logs_exit_with_the_reason(
        main_log: list[dict[str, Any]]) -> None:
    """A relay superd ends (its client connection aborted) closes the
    upstream and logs EXIT with the reason, even without EXIT in
    log_on_success."""
    relay = start(make_service(log_on_success=frozenset()))
    up = relay.connect_upstream()
    relay.session.serve_with(
        lambda: relay.protocol.connectionLost(Failure(Exception("aborted"))))
    assert relay.session.terminate("reconfigured")
    assert up.disconnecting and not relay.session.ended
    relay.upstream.connectionLost(Failure(Exception("closed")))
    assert relay.session.ended
    exits = [e for e in main_log if e.get("event") == "exit"]
    assert [(e["reason"], e["xinetd_line"]) for e in exits] == [("reconfigured", None)]


def test_client_gone_gives_a_stalled_upstream_linger_seconds() -> None:
    """A client gone while the upstream has not taken what the relay holds for
    it: the upstream is closed, and aborted ``LINGER`` seconds later."""
    relay = start()
    up = relay.connect_upstream()
    relay.protocol.dataReceived(b"never taken")
    relay.protocol.connectionLost(Failure(ConnectionDone()))
    assert up.disconnecting and not up.disconnected
    relay.reactor.advance(LINGER - 0.1)
    assert not up.disconnected
    relay.reactor.advance(0.1)
    assert up.disconnected  # StringTransport's abortConnection
    relay.upstream.connectionLost(Failure(ConnectionAborted()))
    assert relay.session.ended and not relay.reactor.getDelayedCalls()


def test_upstream_gone_gives_a_client_that_never_reads_linger_seconds() -> None:
    """An upstream gone while the client does not read the rest: the client is
    aborted ``LINGER`` seconds later and the session ends."""
    relay = start()
    relay.connect_upstream()
    relay.upstream.dataReceived(b"never read")
    relay.upstream.connectionLost(Failure(ConnectionDone()))
    assert relay.client.disconnecting and not relay.client.disconnected
    relay.reactor.advance(LINGER)
    assert relay.client.disconnected
    relay.protocol.connectionLost(Failure(ConnectionAborted()))
    assert relay.session.ended


def test_a_relay_that_closes_in_time_leaves_no_timer() -> None:
    """Both sides closing before ``LINGER`` cancel the abort: nothing is aborted."""
    relay = start()
    up = relay.connect_upstream()
    relay.protocol.readConnectionLost()
    relay.upstream.readConnectionLost()
    assert relay.reactor.getDelayedCalls()
    relay.protocol.connectionLost(Failure(ConnectionDone()))
    relay.upstream.connectionLost(Failure(ConnectionDone()))
    assert relay.session.ended and not relay.reactor.getDelayedCalls()
    assert not (up.disconnected or relay.client.disconnected)


def test_upstream_eof_is_a_half_close_for_the_reactor() -> None:
    """The protocol the reactor's connector builds for the upstream provides
    IHalfCloseableProtocol itself, so Twisted's TCP transport delivers the
    upstream's FIN as readConnectionLost (the relay half-closes the client
    and keeps carrying the client's bytes upstream), not as connectionLost.
    (Twisted's endpoint wrapper dropped that interface for a protocol that
    is also an IHandshakeListener.)"""
    from twisted.internet.interfaces import IHalfCloseableProtocol

    relay = start()
    factory = relay.reactor.tcpClients[0][2]
    upstream = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7))
    assert IHalfCloseableProtocol.providedBy(upstream)
    transport = HalfCloseTransport()
    upstream.makeConnection(transport)
    IHalfCloseableProtocol(upstream).readConnectionLost()
    assert relay.client.write_closed and not relay.client.disconnecting
    relay.protocol.dataReceived(b"more")
    assert transport.value() == b"more" and not transport.disconnecting


def test_upstream_connect_timeout_fails_the_relay(log_events: list[dict[str, Any]]) -> None:
    """The connector's timeout (redirect_timeout) reaches the relay as a
    failed connect: logged, the client closed, the session ended."""
    from twisted.internet.error import TimeoutError as ConnectTimeout

    relay = start()
    factory = relay.reactor.tcpClients[0][2]
    factory.clientConnectionFailed(relay.reactor.connectors[0], Failure(ConnectTimeout()))
    assert relay.client.disconnecting
    (failed,) = [e for e in log_events if e.get("event") == "redirect_failed"]
    assert "timeout" in failed["reason"].lower()
    relay.protocol.connectionLost(Failure(Exception("closed")))
    assert relay.session.ended

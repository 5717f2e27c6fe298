"""
Unit tests of ``superd.handlers.tls.protocol`` over in-memory transports (iosim):
the service protocol starts only after the handshake, client names are an
access rule (FAIL tls), failed and stalled handshakes are logged, closed and
never reach the service, and every path ends the session.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import pytest
from twisted.internet import ssl
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect
from zope.interface import implementer

from superd.config.model import Extensions, Location, ServiceConfig, SocketType, TLSSettings
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.handlers.tls.protocol import TLSHandler, TLSServerProtocol
from tests.certs import PKI, Issued


class App(Protocol):
    """Records what the service protocol saw, and answers in upper case."""

    answer = True

    def __init__(self) -> None:
        self.made = 0
        self.lost = 0
        self.data = b""

    def connectionMade(self) -> None:
        self.made += 1

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.answer:
            self.transport.write(data.upper())  # type: ignore[union-attr]


@implementer(IHalfCloseableProtocol)
class HalfApp(App):
    """A half-close aware service: answers its client's EOF, then closes."""

    def __init__(self) -> None:
        super().__init__()
        self.read_lost = 0

    def readConnectionLost(self) -> None:
        self.read_lost += 1
        self.transport.write(b" and after EOF")  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost += 1


class Recorder(App):
    """The client side: records only."""

    answer = False

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost += 1


@attrs.define
class Inner:
    """A stand-in handler returning one ``App``."""

    app: App = attrs.Factory(App)

    def protocol_for(self, session: Session) -> App:
        return self.app


def service(pki: PKI, **tls: Any) -> ServiceConfig:
    settings = TLSSettings(cert_pem=pki.server.cert_pem, key_pem=pki.server.key_pem, **tls)
    return ServiceConfig(name="echo", id="echo", location=Location("conf/echo", 1),
                         socket_type=SocketType.STREAM, protocol="tcp", wait=False, port=7,
                         log_on_failure=frozenset({"HOST"}),
                         extensions=Extensions(tls=settings))


@attrs.define
class Setup:
    reactor: MemoryReactorClock
    session: Session
    server: TLSServerProtocol
    app: App


def server_side(pki: PKI, app: Optional[App] = None, **tls: Any) -> Setup:
    reactor = MemoryReactorClock()
    inner = Inner() if app is None else Inner(app)
    handler = TLSHandler(service(pki, **tls), inner, Runtime(reactor=reactor))
    session = Session("echo", Peer("10.1.2.3", 5555), None, 0.0)
    server = handler.protocol_for(session)
    assert isinstance(server, TLSServerProtocol)
    return Setup(reactor, session, server, inner.app)


def client(pki: PKI, cert: Optional[Issued], clock: Any, **extra: Any) -> Any:
    ca = ssl.Certificate.loadPEM(pki.ca_pem)
    own = None if cert is None else ssl.PrivateCertificate.loadPEM(cert.cert_pem + cert.key_pem)
    options = ssl.optionsForClientTLS("localhost", trustRoot=ca, clientCertificate=own,
                                      extraCertificateOptions=extra)
    factory = TLSMemoryBIOFactory(options, True, Factory.forProtocol(Recorder), clock=clock)
    return factory.buildProtocol(None)


def pump(setup: Setup, other: Any) -> IOPump:
    io: IOPump = connect(setup.server, FakeTransport(setup.server, isServer=True),
                   other, FakeTransport(other, isServer=False), greet=False,
                   clock=setup.reactor)
    return io


def fails(events: list[dict[str, Any]]) -> list[str]:
    return [e["detail"] for e in events if e.get("event") == "refuse"]


def test_service_starts_after_handshake(pki: PKI) -> None:
    """connectionMade reaches the service only once the handshake is done; data flows."""
    setup = server_side(pki)
    setup.server.makeConnection(StringTransport())
    assert setup.app.made == 0
    setup2 = server_side(pki)
    peer = client(pki, None, setup2.reactor)
    io = pump(setup2, peer)
    io.flush()
    assert setup2.app.made == 1
    peer.write(b"hello")
    io.flush()  # advances the clock: small TLS writes are aggregated for one tick
    assert setup2.app.data == b"hello"
    assert peer.wrappedProtocol.data == b"HELLO"


def test_client_names_refuse(pki: PKI, log_events: list[dict[str, Any]]) -> None:
    """A certificate whose names are not listed: FAIL tls, service never started."""
    setup = server_side(pki, client_ca_pem=pki.ca_pem, verify_client="require",
                        client_names=("someone-else",))
    io = pump(setup, client(pki, pki.client, setup.reactor))
    io.flush()
    assert setup.app.made == 0
    assert fails(log_events) == [
        "client certificate names not allowed: client1, client1@example.org"]
    assert [e["xinetd_line"] for e in log_events if e.get("event") == "refuse"] == [
        "FAIL: echo tls from=10.1.2.3"]


def test_client_names_admit(pki: PKI, log_events: list[dict[str, Any]]) -> None:
    """A listed e-mail subjectAltName admits the client."""
    setup = server_side(pki, client_ca_pem=pki.ca_pem, verify_client="require",
                        client_names=("client1@example.org",))
    io = pump(setup, client(pki, pki.client, setup.reactor))
    io.flush()
    assert setup.app.made == 1 and fails(log_events) == []


def test_wrong_client_certificate(pki: PKI, log_events: list[dict[str, Any]]) -> None:
    """A client certificate from another CA fails the handshake: FAIL tls, session ended."""
    setup = server_side(pki, client_ca_pem=pki.ca_pem, verify_client="require")
    io = pump(setup, client(pki, pki.wrong_client, setup.reactor))
    io.flush()
    assert setup.app.made == 0 and setup.app.lost == 0
    assert setup.session.ended
    assert len(fails(log_events)) == 1 and fails(log_events)[0].startswith("handshake failed")


def test_garbage_instead_of_hello(pki: PKI, log_events: list[dict[str, Any]]) -> None:
    """Plain text on a TLS port: FAIL tls, the connection closed, the service untouched."""
    setup = server_side(pki)
    transport = StringTransport()
    setup.server.makeConnection(transport)
    setup.server.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    assert transport.disconnecting
    setup.server.connectionLost(Failure(Exception("closed")))
    assert setup.app.lost == 0 and setup.session.ended
    assert fails(log_events)[0].startswith("handshake failed")


def test_handshake_timeout(pki: PKI, log_events: list[dict[str, Any]]) -> None:
    """A client that never finishes the handshake is aborted after the timeout."""
    setup = server_side(pki, handshake_timeout=3.0)
    transport = StringTransport()
    setup.server.makeConnection(transport)
    setup.reactor.advance(2.9)
    assert not transport.disconnecting
    setup.reactor.advance(0.2)
    assert transport.disconnecting
    assert fails(log_events) == ["handshake not finished in 3s"]


def test_timer_cancelled_after_handshake(pki: PKI) -> None:
    """A finished handshake leaves no timer behind."""
    setup = server_side(pki, handshake_timeout=3.0)
    io = pump(setup, client(pki, None, setup.reactor))
    io.flush()
    assert setup.app.made == 1
    assert not [c for c in setup.reactor.getDelayedCalls() if c.active()
                and c.getTime() >= 3.0]


class _NoDelayTransport(StringTransport):
    """A StringTransport that remembers setTcpNoDelay (ITCPTransport)."""

    no_delay: Optional[bool] = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


def test_tls_connections_disable_nagle(pki: PKI) -> None:
    """
    TLS sessions switch TCP_NODELAY on: records are already coalesced, and
    Nagle would make each request/response wait ~40 ms for a delayed ACK
    (TLS echo measured 1.4 MB/s with Nagle against stunnel's 187 MB/s).
    """
    setup = server_side(pki)
    transport = _NoDelayTransport()
    setup.server.makeConnection(transport)
    assert transport.no_delay is True


def _half_close(pki: PKI, app: App, **client_options: Any) -> tuple[Setup, Recorder]:
    """A client that sends b"hello", then close_notify (its loseConnection)."""
    setup = server_side(pki, app)
    peer = client(pki, None, setup.reactor, **client_options)
    io = pump(setup, peer)
    io.flush()
    recorder: Recorder = peer.wrappedProtocol
    peer.write(b"hello")
    io.flush()
    peer.loseConnection()
    io.flush()
    return setup, recorder


def test_close_notify_is_a_half_close(pki: PKI) -> None:
    """
    TLS 1.3: the client's close_notify reaches a half-close aware service as
    readConnectionLost; what it writes afterwards still reaches the client,
    followed by superd's close_notify, and the session ends.
    """
    setup, peer = _half_close(pki, HalfApp())
    app = setup.app
    assert isinstance(app, HalfApp) and app.read_lost == 1
    assert peer.data == b"HELLO and after EOF"
    assert peer.lost == 1 and app.lost == 1
    assert setup.server.read_closed and setup.session.ended


def test_tcp_eof_after_close_notify_keeps_writing(pki: PKI) -> None:
    """
    After the close_notify, a TCP FIN is no news: the TCP transport finds
    the TLS layer half-closeable (readConnectionLost, not connectionLost),
    so the service can still answer; before it, Twisted's full close stands.
    """
    setup = server_side(pki)
    assert IHalfCloseableProtocol(setup.server, None) is None
    app = _Silent()
    setup = server_side(pki, app)
    peer = client(pki, None, setup.reactor)
    io = pump(setup, peer)
    io.flush()
    recorder: Recorder = peer.wrappedProtocol
    peer.loseConnection()
    io.flush()
    assert app.read_lost == 1 and app.lost == 0
    assert IHalfCloseableProtocol.providedBy(setup.server)
    setup.server.readConnectionLost()  # what the TCP transport calls on a FIN now
    assert app.read_lost == 1 and app.lost == 0
    fed = _RecordingConnection(setup.server._tlsConnection)
    setup.server._tlsConnection = fed  # type: ignore[assignment]
    setup.server.dataReceived(b"\x17\x03\x03" + b"x" * 5000)  # bytes after close_notify
    assert fed.fed == 0 and app.data == b""  # dropped: they cannot pile up in the BIO
    setup.server._tlsConnection = fed.connection
    app.transport.write(b"late")  # type: ignore[union-attr]
    app.transport.loseConnection()  # type: ignore[union-attr]
    io.flush()
    assert recorder.data == b"late" and recorder.lost == 1 and app.lost == 1


class _RecordingConnection:
    """Counts bytes fed to a pyOpenSSL connection's receive BIO."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.fed = 0

    def bio_write(self, data: bytes) -> int:
        self.fed += len(data)
        return int(self.connection.bio_write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


@implementer(IHalfCloseableProtocol)
class _Silent(App):
    """A half-close aware service that does nothing on EOF until told."""

    def __init__(self) -> None:
        super().__init__()
        self.read_lost = 0

    def readConnectionLost(self) -> None:
        self.read_lost += 1

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost += 1


def test_close_notify_closes_a_plain_service(pki: PKI) -> None:
    """A service that is not half-close aware: Twisted's full close, as before."""
    app = Recorder()
    app.answer = True
    setup, peer = _half_close(pki, app)
    assert app.lost == 1 and not setup.server.read_closed
    assert peer.data == b"HELLO" and peer.lost == 1


def test_close_notify_under_tls12_closes(pki: PKI) -> None:
    """
    TLS 1.2: RFC 5246 section 7.2.1 says to answer close_notify at once and
    discard pending writes, so even a half-close aware service is closed.
    """
    setup, peer = _half_close(pki, HalfApp(), lowerMaximumSecurityTo=ssl.TLSVersion.TLSv1_2)
    app = setup.app
    assert isinstance(app, HalfApp)
    assert app.read_lost == 0 and app.lost == 1 and not setup.server.read_closed
    assert peer.data == b"HELLO"


class ChildOwned(App):
    """A service whose session ends with its child, not its connection."""

    session_outlives_connection = True


@pytest.mark.parametrize("app_class, ended", [(App, True), (ChildOwned, False)])
def test_session_end_is_left_to_a_child_that_owns_it(pki: PKI, app_class: type,
                                                     ended: bool) -> None:
    """The connection's end ends the session, except for a service whose child
    owns it (the TLS pipe): that session counts until the child is reaped."""
    setup = server_side(pki, app_class())
    io = pump(setup, client(pki, None, setup.reactor))
    io.flush()
    assert setup.app.made == 1
    setup.server.connectionLost(Failure(ConnectionLost("client reset")))
    assert setup.session.ended is ended


def test_certificate_files_watched_while_a_socket_is_served(pki: PKI) -> None:
    """The handler's files are watched from its first socket's start to its last's stop."""
    calls: list[tuple[str, object]] = []

    class Files:
        def add(self, member: object) -> None:
            calls.append(("add", member))

        def remove(self, member: object) -> None:
            calls.append(("remove", member))

    handler = TLSHandler(service(pki), Inner(), Runtime(reactor=MemoryReactorClock()),
                         Files())  # type: ignore[arg-type]
    handler.start()
    handler.start()
    handler.stop()
    assert calls == [("add", handler.certificate)]
    handler.stop()
    assert calls == [("add", handler.certificate), ("remove", handler.certificate)]

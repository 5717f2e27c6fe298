"""
The TLS layer of one service connection, directly under the service's own
protocol: no ``WrappingFactory`` between, since a ``ProtocolWrapper`` would
hide the interfaces the service's protocol provides
(``IHalfCloseableProtocol``, ``IHandshakeListener``) from the transport.

``TLSHandler`` wraps another ``IStreamHandler``.  Access control has already
admitted the peer when it runs, so a refused peer never costs a handshake.
The service's protocol is connected only once the handshake has succeeded
and the client certificate passed ``tls_client_names``: a builtin logs START
only then, and a spawned server is started only then, so abandoned or failed
handshakes never cost a process.  Every failure -- plain text on the port, a
certificate that does not verify, a name that is not allowed, a handshake
that does not finish in ``tls_handshake_timeout`` -- is a FAIL line with
reason ``tls`` and a closed connection.

Under TLS 1.3 the client's close_notify is a read-side half-close for a
service that provides ``IHalfCloseableProtocol`` (RFC 8446 section 6.1): it
hears ``readConnectionLost`` and may keep writing; its ``loseConnection``
then sends superd's close_notify and closes, as Twisted does.  Otherwise
(TLS 1.2, other services) Twisted's full close stands.
"""

from __future__ import annotations

from typing import Any, Optional

from OpenSSL.SSL import TLS1_3_VERSION
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from superd.config.model import ServiceConfig, TLSSettings
from superd.config.tlscontext import ServerConnectionCreator, error_text, server_context
from superd.core.interfaces import IStreamHandler
from superd.core.runtime import Runtime
from superd.core.session import Session
from superd.core.twistedtls import TLSServerTransport
from superd.handlers.tls.certwatch import CertificateFiles
from superd.handlers.tls.livecert import LiveCertificate
from superd.handlers.tls.names import certificate_names, matching_name
from superd.observe import events

__all__ = ["TLSHandler", "TLSServerProtocol", "client_refusal", "peer_facts"]

_log = Logger(namespace="superd.tls")


def client_refusal(settings: TLSSettings, connection: Any) -> Optional[str]:
    """Why the client's certificate is not allowed by ``tls_client_names``, or None."""
    if not settings.client_names:
        return None
    cert = connection.get_peer_certificate()
    if cert is None:
        return "no client certificate"
    names = certificate_names(cert.to_cryptography())
    if matching_name(names, settings.client_names) is None:
        return "client certificate names not allowed: " + ", ".join(names)
    return None


def peer_facts(connection: Any) -> dict[str, str]:
    """What a server may want to know about a finished handshake (for its environment)."""
    facts = {"SUPERD_TLS_VERSION": connection.get_protocol_version_name() or "",
             "SUPERD_TLS_CIPHER": connection.get_cipher_name() or ""}
    cert = connection.get_peer_certificate()
    if cert is not None:
        parsed = cert.to_cryptography()
        facts["SUPERD_TLS_CLIENT_SUBJECT"] = parsed.subject.rfc4514_string()
        facts["SUPERD_TLS_CLIENT_NAMES"] = " ".join(certificate_names(parsed))
    return facts


class TLSServerProtocol(TLSServerTransport):
    """TLS for one admitted session; the service protocol starts after the handshake."""

    def __init__(self, factory: TLSMemoryBIOFactory, app: Any, service: ServiceConfig,
                 session: Session, runtime: Runtime) -> None:
        super().__init__(factory, app)
        self.service = service
        self.session = session
        self.runtime = runtime
        self.settings: TLSSettings = service.extensions.tls  # type: ignore[assignment]
        self.app_connected = False
        self._failed = False
        self._timer: Any = None

    def makeConnection(self, transport: Any) -> None:
        self._timer = self.runtime.reactor.callLater(
            self.settings.handshake_timeout, self._timed_out)
        # BufferingTLSTransport already coalesces each turn's writes into
        # records; Nagle on top only makes every request/response exchange
        # wait for the peer's delayed ACK.  stunnel sets it too.
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        super().makeConnection(transport)

    def handshake_succeeded(self) -> None:
        """Check the client certificate, then start the service protocol
        (connectionMade, then handshakeCompleted)."""
        self._cancel_timer()
        refusal = client_refusal(self.settings, self.tls_connection)
        if refusal is not None:
            self._fail(refusal)
            self.close_quietly()
            return
        self.app_connected = True
        self.wrappedProtocol.makeConnection(self)
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def dataReceived(self, data: bytes) -> None:
        if self.read_closed:
            # Nothing may follow the client's close_notify, and nothing reads
            # the receive BIO after it: bytes fed to it would only pile up.
            return
        super().dataReceived(data)

    def close_notify_received(self) -> None:
        """The client's close_notify: a half-close if the service can take one."""
        if not self._may_half_close():
            super().close_notify_received()  # answer close_notify and close
            return
        self.read_closed = True
        # A TCP FIN after the close_notify is no news: from now on the TCP
        # transport tells this protocol (readConnectionLost) instead of
        # closing the connection, so the service can still answer.
        alsoProvides(self, IHalfCloseableProtocol)
        IHalfCloseableProtocol(self.wrappedProtocol).readConnectionLost()

    def _may_half_close(self) -> bool:
        # RFC 8446 section 6.1 lets a party keep writing after the peer's
        # close_notify; RFC 5246 section 7.2.1 (TLS 1.2 and older) says to
        # answer it at once and discard pending writes, so only TLS 1.3.
        return (self.app_connected and not self.disconnecting
                and self.tls_connection.get_protocol_version() >= TLS1_3_VERSION
                and IHalfCloseableProtocol.providedBy(self.wrappedProtocol))

    def readConnectionLost(self) -> None:
        """TCP EOF after the client's close_notify (``close_notify_received``): nothing to do."""

    def writeConnectionLost(self) -> None:
        """Part of ``IHalfCloseableProtocol``; superd never half-closes its own TCP side."""

    def _timed_out(self) -> None:
        self._timer = None
        if not self.handshake_done:
            self._fail(f"handshake not finished in {self.settings.handshake_timeout:g}s")
            self.abortConnection()

    def _fail(self, detail: str) -> None:
        if not self._failed:
            self._failed = True
            events.emit_fail(self.service, events.REASON_TLS, self.session.peer, detail)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        if not self.app_connected:
            failure: Failure = self.failure_reason or reason
            if self.session.end_reason is None:  # else superd cut it short: no TLS fault
                self._fail(f"handshake failed: {error_text(failure.value or Exception())}")
            # The service protocol never started: it must not hear of an end.
            self.wrappedProtocol = Protocol()
        # A child behind the pipe keeps its session until it is reaped (it
        # still counts toward instances and per_source).  Asked first: the
        # wrapper forgets its protocol in connectionLost.
        keeps_session = self.app_connected and getattr(
            self.wrappedProtocol, "session_outlives_connection", False)
        try:
            super().connectionLost(reason)
        finally:
            if not keeps_session:
                self.session.end()


@implementer(IStreamHandler)
class TLSHandler:
    """
    Serves ``inner``'s protocols over TLS terminated by superd.  While it
    serves a socket (between ``start`` and ``stop``) ``certificates`` watches
    its files, and a renewed certificate is used from the next connection on.
    """

    def __init__(self, service: ServiceConfig, inner: Any, runtime: Runtime,
                 certificates: Optional[CertificateFiles] = None) -> None:
        assert service.extensions.tls is not None
        self.service = service
        self.inner = inner
        self.runtime = runtime
        creator = ServerConnectionCreator(server_context(service.extensions.tls))
        self.tls_factory = TLSMemoryBIOFactory(creator, False, Factory(), clock=runtime.reactor)
        self.certificate = LiveCertificate(service, creator)
        self._certificates = certificates
        self._sockets = 0

    def start(self) -> None:
        """One more socket is served: watch the files while any is."""
        self._sockets += 1
        if self._sockets == 1 and self._certificates is not None:
            self._certificates.add(self.certificate)

    def stop(self) -> None:
        """One socket fewer."""
        self._sockets -= 1
        if self._sockets == 0 and self._certificates is not None:
            self._certificates.remove(self.certificate)

    def protocol_for(self, session: Session) -> Optional[Protocol]:
        """``inner``'s protocol for ``session``, under a TLS layer of its own."""
        app = self.inner.protocol_for(session)
        if app is None:
            return None
        return TLSServerProtocol(self.tls_factory, app, self.service, session, self.runtime)

    def __repr__(self) -> str:
        return f"<TLSHandler {self.service.id} over {self.inner!r}>"

"""
``redirect = host port``: relay each admitted connection to another host.

xinetd forks a relay child per connection, connects with no timeout and
ends both directions at the first EOF.  superd relays in-process: a non-blocking connect bounded by
``redirect_timeout``; each transport registered as the other's streaming
producer, so a slow reader on either side stops reading on the other and
memory stays bounded; half-close carried both ways (a client that shuts
down writing still gets the whole answer); optional TLS to the upstream,
verified against ``redirect_tls_name`` (service_identity).  Access control
has run before a connection reaches the handler, so a refused peer never
causes an upstream connection.

A relay to a plain TCP upstream whose client reached it directly (no gate,
no TLS) runs on both connections' bare descriptors (``BareRelayProtocol``).

Once one side is gone, the other is closed after what the relay still holds
for it is written, but only for ``LINGER`` seconds: a peer that no longer
reads (or an upstream blocked writing to a relay that has stopped reading
it, as when a never-reading client leaves) is then aborted, so the session
and both descriptors always end.

With ``TRAFFIC`` in ``log_on_success`` the end of a relay logs xinetd's
``TRAFFIC: <id> in=N(bytes) out=M(bytes)`` (in = client to server).

With ``redirect_proxy = v1 | v2`` the relay first sends the upstream a
PROXY protocol header naming the client (the one a PROXY header named, on
a ``proxy_protocol`` service) and the address it connected to.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.config.model import ServiceConfig
from superd.config.tlscontext import client_options, error_text
from superd.core.interfaces import IStreamHandler
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.net.bare import BareConnection
from superd.net.connection import close_if_flushed, close_writing_if_flushed
from superd.net.proxywire import build_header
from superd.net.tcpconnect import Attempt, connect_tcp
from superd.observe import events

__all__ = ["LINGER", "BareRelayProtocol", "DirectTCP", "RedirectHandler", "RelayProtocol",
           "emit_traffic", "proxy_header", "upstream_endpoint"]

_log = Logger(namespace="superd.redirect")

#: Seconds a side being closed may take to accept what the relay holds for
#: it (as a closing socket's SO_LINGER); then it is aborted.
LINGER = 10.0


def emit_traffic(service: ServiceConfig, inbound: int, outbound: int,
                 duration: float = 0.0) -> None:
    """Log the end of a relay: the bytes it carried (in = client to server)."""
    _log.info("TRAFFIC {service_id} in={inbound} out={outbound}", event=events.EV_TRAFFIC,
              service_id=service.id, service_block=events.block_of(service),
              inbound=inbound, outbound=outbound, duration=duration,
              xinetd_line=events.traffic_line(service.id, service.log_on_success,
                                              inbound, outbound))


class DirectTCP:
    """
    A plain TCP upstream, connected by ``superd.net.tcpconnect`` (on
    superd's own transport) with the relay's own factory.

    An endpoint (``TCP4ClientEndpoint``) wraps the factory and every
    protocol it builds, proxies each call of the protocol through the
    wrapper and reports the outcome through Deferreds: per relayed
    connection, more CPU than relaying the connection.  The relay's
    factory hears the outcome directly instead.
    """

    def __init__(self, reactor: Any, host: str, port: int, timeout: float) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.timeout = timeout

    def connect_factory(self, factory: ClientFactory) -> Attempt:
        """Start connecting ``factory`` (its ``clientConnectionFailed`` says if it fails)."""
        return connect_tcp(self.reactor, self.host, self.port, factory, self.timeout)


#: Where a relay connects: a plain TCP upstream, or an endpoint (TLS, a child).
Upstream = Union[DirectTCP, IStreamClientEndpoint]


def upstream_endpoint(service: ServiceConfig, reactor: Any) -> Upstream:
    """Where ``service`` relays to: TCP (v4 or v6) with a connect timeout, maybe TLS."""
    target = service.redirect
    assert target is not None
    timeout = service.extensions.redirect_timeout
    upstream_tls = service.extensions.redirect_tls
    if upstream_tls is None:
        return DirectTCP(reactor, target.host, target.port, timeout)
    endpoint: IStreamClientEndpoint
    if ipaddress.ip_address(target.host).version == 6:
        endpoint = TCP6ClientEndpoint(reactor, target.host, target.port, timeout=timeout)
    else:
        endpoint = TCP4ClientEndpoint(reactor, target.host, target.port, timeout=timeout)
    return wrapClientTLS(client_options(upstream_tls), endpoint)


def proxy_header(version: int, session: Session, transport: Any) -> bytes:
    """The PROXY header of ``redirect_proxy = v<version>``: the session's
    client, and where it connected to (at the load balancer in front of
    superd, if one said so; else superd's own address)."""
    origin, peer = session.origin, session.peer
    assert peer is not None
    if origin is not None and origin.destination is not None:
        destination = origin.destination
    else:
        destination = session.local or Peer.from_address(transport.getHost())
    return build_header(version, peer, destination)


def _close_writing(transport: Any) -> None:
    """Half-close: FIN after what is buffered.  TLS cannot: close it fully."""
    if isinstance(transport, TLSMemoryBIOProtocol) or not hasattr(transport, "loseWriteConnection"):
        transport.loseConnection()
    elif not close_writing_if_flushed(transport):
        transport.loseWriteConnection()


def _tune(transport: Any, keepalive: bool) -> None:
    # xinetd sets TCP_NODELAY on both sides of a relay (and KEEPALIVE upstream).
    nodelay = getattr(transport, "setTcpNoDelay", None)
    if nodelay is None:
        return
    try:
        nodelay(True)
        if keepalive:
            transport.setTcpKeepAlive(True)
    except OSError:
        pass


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class _Upstream(Protocol):
    """The relay's connection to the upstream server."""

    def __init__(self, relay: "RelayProtocol") -> None:
        self.relay = relay
        self.eof = False
        self.handshake_done = False

    def handshakeCompleted(self) -> None:
        """A TLS upstream finished its handshake."""
        self.handshake_done = True

    def connectionMade(self) -> None:
        self.relay.upstream_connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.relay.from_upstream(data)

    def readConnectionLost(self) -> None:
        if not self.eof:
            self.eof = True
            self.relay.upstream_eof()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.relay.service.extensions.redirect_tls is not None and not self.handshake_done:
            # TLS to the upstream failed (a certificate, a version or a suite
            # refused): as much a failure to reach it as a refused connect.
            self.relay.log_connect_failure(reason)
        self.relay.upstream_lost()


class _BareUpstream(_Upstream):
    """The upstream side of a relay whose client is on its bare descriptor."""

    #: ``superd.net.tcpconnect`` serves it on the bare descriptor too.
    serves_bare = True


class _UpstreamFactory(ClientFactory):
    noisy = False

    def __init__(self, relay: "RelayProtocol") -> None:
        self.relay = relay

    def buildProtocol(self, addr: Any) -> _Upstream:
        if isinstance(self.relay.transport, BareConnection):
            return _BareUpstream(self.relay)
        return _Upstream(self.relay)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        # Only a DirectTCP upstream's connector calls this (an endpoint
        # wraps the factory and reports through its Deferred).
        self.relay.connect_failed(reason)


@implementer(IHalfCloseableProtocol)
class RelayProtocol(Protocol):
    """One relayed client connection (the client side) and its upstream."""

    transport: Any = None
    #: The relay itself is what START/TRAFFIC/EXIT and the session's end
    #: describe (False when a child process is, as in TLS pipe mode).
    logs_session = True

    def __init__(self, service: ServiceConfig, runtime: Runtime, session: Session,
                 endpoint: Upstream) -> None:
        self.service = service
        self.runtime = runtime
        self.session = session
        self.endpoint = endpoint
        self.upstream: Optional[_Upstream] = None
        self._early: list[bytes] = []
        self.inbound = 0
        self.outbound = 0
        self.client_eof = False
        self.client_gone = False
        #: The client was paused: it sent bytes before the upstream was there.
        self._client_paused = False
        self.upstream_gone = False
        self._connecting: Optional[Deferred[Any]] = None
        self._connector: Optional[Attempt] = None
        #: Each transport has the other as its producer (flow control) from
        #: the upstream's connect until nothing more is written to it.
        self._upstream_fed = False
        self._client_fed = False
        #: Both sides are bare descriptors: each becomes the other's producer
        #: only once a write to it leaves bytes unsent (see ``BareRelayProtocol``).
        self._lazy_flow = False
        #: Aborts whatever is still open once the relay started closing.
        self._linger: Optional[IDelayedCall] = None

    # -- client side -------------------------------------------------------

    def connectionMade(self) -> None:
        if self.logs_session:
            events.emit_session_start(self.service, 0, self.session.peer)
        _tune(self.transport, False)
        factory = _UpstreamFactory(self)
        if isinstance(self.endpoint, DirectTCP):
            attempt = self.endpoint.connect_factory(factory)
            # The outcome may be known already (a local upstream): then
            # there is no attempt left to give up.
            if self.upstream is None and not self.upstream_gone:
                self._connector = attempt
        else:
            self._connecting = self.endpoint.connect(factory)
            self._connecting.addErrback(self.connect_failed)

    def dataReceived(self, data: bytes) -> None:
        self.inbound += len(data)
        upstream = self.upstream
        if upstream is not None:
            theirs: Any = upstream.transport
            theirs.write(data)
            if self._lazy_flow and not self._upstream_fed and theirs.buffered():
                self._feed_upstream()
        else:
            # Bytes before the upstream is there: kept, and the client paused
            # until it is (at most one read, or what a TLS layer had already
            # decrypted).  Most clients wait for the upstream to speak, so
            # pausing only now spares two epoll changes per connection.
            self._early.append(data)
            if not self._client_paused and not self.client_eof:
                self._client_paused = True
                self.transport.pauseProducing()

    def readConnectionLost(self) -> None:
        if self.client_eof:
            return
        self.client_eof = True
        if self.upstream is not None:
            self._unfeed_upstream()
            if not self.upstream.eof:
                _close_writing(self.upstream.transport)
            # else both directions are over: closing sends the FIN.
            self._close_if_done()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.client_gone = True
        if self._connecting is not None:
            self._connecting.cancel()
        connector, self._connector = self._connector, None
        if connector is not None:
            # Given up: no upstream will come (the connector reports the
            # attempt failed, which changes nothing more).
            self.upstream_gone = True
            connector.stopConnecting()
        if self.upstream is not None and not self.upstream_gone:
            self._unfeed_upstream()
            self._lose(self.upstream.transport)
        self._finish_if_done()

    # -- upstream side -----------------------------------------------------

    def upstream_connected(self, upstream: _Upstream) -> None:
        """The upstream answered: link the two transports and start relaying."""
        self._connecting = self._connector = None
        self.upstream = upstream
        theirs: Any = upstream.transport
        if self.client_gone:
            self._lose(theirs)
            return
        _tune(theirs, "KEEPALIVE" in self.service.flags)
        if isinstance(theirs, BareConnection) and isinstance(self.transport, BareConnection):
            self._lazy_flow = True
        else:
            # Each side stops reading while the other cannot take more.
            self._feed_upstream()
            self._feed_client()
        version = self.service.extensions.redirect_proxy
        if version is not None:
            theirs.write(proxy_header(version, self.session, self.transport))
        early, self._early = self._early, []
        for data in early:
            theirs.write(data)
        if self._lazy_flow and (version is not None or early) and theirs.buffered():
            self._feed_upstream()
        if self._client_paused:
            self._client_paused = False
            self.transport.resumeProducing()
        if self.client_eof:
            self._unfeed_upstream()
            _close_writing(theirs)

    def connect_failed(self, failure: Failure) -> None:
        """The upstream could not be reached (or the attempt was given up)."""
        self._connecting = self._connector = None
        if self.upstream_gone:
            return
        self.upstream_gone = True
        if not self.client_gone:
            self.log_connect_failure(failure)
            self._lose(self.transport)
        self._finish_if_done()

    def log_connect_failure(self, failure: Failure) -> None:
        """Say why the upstream could not be reached."""
        target = self.service.redirect
        _log.warn("{service_id}: cannot connect to {host} port {port}: {reason}",
                  event=events.EV_REDIRECT_FAILED, service_id=self.service.id,
                  host=target.host if target else None, port=target.port if target else None,
                  reason=error_text(failure.value or Exception()),
                  peer_host=self.session.peer.host if self.session.peer else None)

    def from_upstream(self, data: bytes) -> None:
        """Bytes from the upstream, for the client."""
        self.outbound += len(data)
        transport = self.transport
        transport.write(data)
        if self._lazy_flow and not self._client_fed and transport.buffered():
            self._feed_client()

    def upstream_eof(self) -> None:
        """The upstream finished sending: so does the relay, to the client."""
        if not self.client_gone:
            # Nothing more comes from the upstream; a TLS transport also waits
            # for its producer to go before it sends close_notify.
            self._unfeed_client()
            if not self.client_eof:
                _close_writing(self.transport)
            # else both directions are over: closing sends the FIN.
        self._close_if_done()

    def upstream_lost(self) -> None:
        """The upstream connection is closed (after any half-close)."""
        self.upstream_gone = True
        if not self.client_gone:
            self._unfeed_client()
            self._lose(self.transport)
        self._finish_if_done()

    def _feed_upstream(self) -> None:
        # The upstream's transport pauses the client while it holds too much.
        self._upstream_fed = True
        self.upstream.transport.registerProducer(self.transport, True)  # type: ignore[union-attr]

    def _feed_client(self) -> None:
        self._client_fed = True
        self.transport.registerProducer(self.upstream.transport, True)  # type: ignore[union-attr]

    def _unfeed_upstream(self) -> None:
        # The client writes nothing more upstream.  A TLS upstream sends
        # close_notify only once it has no producer: without this, a relay
        # to a TLS upstream whose client left first held both connections
        # (and the session) forever.
        if self._upstream_fed:
            self._upstream_fed = False
            self.upstream.transport.unregisterProducer()  # type: ignore[union-attr]

    def _unfeed_client(self) -> None:
        if self._client_fed:
            self._client_fed = False
            self.transport.unregisterProducer()

    # -- the end -----------------------------------------------------------

    def _close_if_done(self) -> None:
        # Both directions finished: close both connections for good.
        if self.client_eof and self.upstream is not None and self.upstream.eof:
            # Closing one side may close the other (its connectionLost runs):
            # a side already gone needs nothing, nor a LINGER timer.
            if not self.upstream_gone:
                self._lose(self.upstream.transport)
            if not self.client_gone:
                self._lose(self.transport)

    def _lose(self, transport: Any) -> None:
        # loseConnection waits until the write buffer is empty, which never
        # happens if the peer stopped reading: bound the wait.  Nothing
        # left to send: closed at once (connectionLost has run).
        if close_if_flushed(transport):
            return
        transport.loseConnection()
        if self._linger is None and not (self.client_gone and self.upstream_gone):
            self._linger = self.runtime.reactor.callLater(LINGER, self._abort_remaining)

    def _abort_remaining(self) -> None:
        self._linger = None
        if not self.client_gone:
            self.transport.abortConnection()
        if self.upstream is not None and not self.upstream_gone:
            self.upstream.transport.abortConnection()  # type: ignore[union-attr]

    def _finish_if_done(self) -> None:
        if not (self.client_gone and self.upstream_gone):
            return
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self.session.ended:
            self.finished()

    def finished(self) -> None:
        """Both sides are closed: log the relay's end and end the session."""
        flags = self.service.log_on_success
        duration = max(0.0, self.runtime.seconds() - self.session.started)
        # Events for the end only when the service logs it (TRAFFIC, or
        # xinetd's relay-child EXIT): logging is the largest per-connection
        # cost of a relay, and START already records the connection.
        if "TRAFFIC" in flags:
            emit_traffic(self.service, self.inbound, self.outbound, duration)
        reason = self.session.end_reason  # set when superd ended it (a ban, a reload)
        if reason is not None or events.exit_line(self.service.id, flags, 0, 0, None,
                                                  duration) is not None:
            events.emit_session_exit(self.service, 0, 0, None, duration, reason)
        self.session.end()


class BareRelayProtocol(RelayProtocol):
    """
    A relay to a plain TCP upstream, served on bare descriptors when it can:
    the client's as the port accepted it, the upstream's as connect() made
    it (``superd.net.bare``).  Twisted's transports cost more Python per
    relayed connection than the relaying itself (a socket object and a
    ``tcp.Server`` per side, producers registered and unregistered both
    ways, a chain of ``connectionLost`` calls); bare, each side is read with
    ``os.read`` and written with ``os.write`` straight from its descriptor.

    Flow control is kept: a side whose write the kernel does not take whole
    moves onto the ordinary transport with the rest buffered, and only then
    is the other side registered as its producer, so a slow reader still
    stops the relay reading from the other side.  A relay with a gate in
    front (a banner, a name lookup) or TLS on the client has no bare client
    and relays on Twisted's transports as ``RelayProtocol`` does.
    """

    #: A ``TakingPort`` may serve it on the bare descriptor.
    serves_bare = True


@implementer(IStreamHandler)
class RedirectHandler:
    """The ``IStreamHandler`` of a ``redirect`` service."""

    def __init__(self, service: ServiceConfig, runtime: Runtime) -> None:
        self.service = service
        self.runtime = runtime
        self.endpoint = upstream_endpoint(service, runtime.reactor)

    def protocol_for(self, session: Session) -> RelayProtocol:
        """A relay for ``session`` (the upstream is connected in connectionMade)."""
        if isinstance(self.endpoint, DirectTCP):
            return BareRelayProtocol(self.service, self.runtime, session, self.endpoint)
        return RelayProtocol(self.service, self.runtime, session, self.endpoint)

    def __repr__(self) -> str:
        return f"<RedirectHandler {self.service.id} -> {self.service.redirect}>"

"""
Services behind a load balancer: ``proxy_protocol``.

Such a service's connections come from a proxy (HAProxy, a cloud load
balancer) that opens each with a PROXY protocol header naming the client
it accepted.  ``ProxiedFactory`` is the service's access-controlled
factory; for each connection it

1. refuses a source not in ``proxy_from`` (FAIL ``proxy``), before reading
   a byte;
2. holds the connection in a ``HeaderGate``, which reads the header off the
   socket (``superd.net.proxyreader``: exactly the header, so the bytes
   after it stay queued for the TLS handshake, the builtin or the server
   the socket is handed to) within ``proxy_timeout`` seconds; a missing,
   malformed, oversized or late header is refused (FAIL ``proxy``) and the
   connection closed;
3. runs the service's own admission (``AccessControlledFactory.
   buildProtocol``) for the client the header names: address lists,
   hosts.allow/deny, per_source, cps, bans and sensors, the logs, the
   spawned server's ``REMOTE_*``, all see that client.  A v2 ``LOCAL``
   header (a health check), a v1 ``UNKNOWN`` one, or one naming no IP
   client keeps the proxy's own address as the peer.

Services without ``proxy_protocol`` get a plain ``AccessControlledFactory``
(``stream_factory`` chooses): nothing here runs for them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from superd.access.addresses import AddressRules
from superd.access.decision import deny
from superd.access.factory import AccessControlledFactory, _peer
from superd.access.state import AccessState
from superd.config.model import ProxySettings, ServiceConfig
from superd.core import twistedprivate
from superd.core.origin import ProxyOrigin
from superd.core.session import Peer
from superd.net.proxyreader import HeaderReader, Outcome
from superd.net.proxywire import HeaderError, parse_header
from superd.observe import events

__all__ = ["HeaderGate", "ProxiedFactory", "stream_factory"]


def stream_factory(service: ServiceConfig, handler: Any,
                   access: AccessState) -> AccessControlledFactory:
    """The access-controlled factory of a stream service: one that reads a
    PROXY header first when the service has ``proxy_protocol``."""
    if service.extensions.proxy is not None:
        return ProxiedFactory(service, handler, access)
    return AccessControlledFactory(service, handler, access)


class ProxiedFactory(AccessControlledFactory):
    """Admits the clients that a trusted proxy's PROXY headers name."""

    def __init__(self, service: ServiceConfig, handler: Any,
                 access: AccessState) -> None:
        super().__init__(service, handler, access)
        settings = service.extensions.proxy
        assert settings is not None
        self.settings: ProxySettings = settings
        # The peer is known only once the header is read: every connection
        # needs a transport, never the bare-descriptor path.
        self.take_connection = None
        self._trusted = (None if settings.sources is None
                         else AddressRules(settings.sources, ()))

    def buildProtocol(self, addr: IAddress | None,
                      origin: ProxyOrigin | None = None) -> Protocol | None:
        """A gate that reads the header, or a refusal of an untrusted source."""
        proxy = _peer(addr)
        if self._trusted is not None and not self._trusted.decide(proxy.host):
            return self.refuse(proxy, deny(events.REASON_PROXY, "not in proxy_from"))
        return HeaderGate(self, addr, proxy)

    def client_protocol(self, addr: IAddress | None, origin: ProxyOrigin) -> Protocol | None:
        """Admit or refuse the client at ``addr`` that a header named."""
        return AccessControlledFactory.buildProtocol(self, addr, origin)


class HeaderGate(Protocol):
    """Holds a connection from a proxy until its PROXY header is read."""

    transport: Any

    def __init__(self, factory: ProxiedFactory, addr: IAddress | None,
                 proxy: Peer) -> None:
        self.gate_factory = factory
        self.addr = addr
        self.proxy = proxy
        self._reader: HeaderReader | None = None
        self._timer: Any = None
        self._lost = False

    @property
    def _reactor(self) -> Any:
        return self.gate_factory.runtime.reactor

    def connectionMade(self) -> None:
        transport = self.transport
        settings = self.gate_factory.settings
        handle = getattr(transport, "getHandle", None)
        if handle is None:
            self._refuse("not a socket connection")
            return
        # Twisted reads nothing from now on; the header reader takes exactly
        # the header off the socket when it is readable.
        transport.stopReading()
        self._reader = HeaderReader(handle(), settings.versions, self._read, transport)
        self._reactor.addReader(self._reader)
        self._timer = self._reactor.callLater(settings.timeout, self._timed_out)

    def _stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            self._reactor.removeReader(reader)
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timed_out(self) -> None:
        self._timer = None
        self._stop()
        self._refuse(f"no complete header within {self.gate_factory.settings.timeout:g}s")

    def _read(self, outcome: Outcome) -> None:
        self._stop()
        if isinstance(outcome, HeaderError):
            self._refuse(str(outcome))
            return
        try:
            header = parse_header(outcome, self.proxy)
        except HeaderError as e:
            self._refuse(str(e))
            return
        client = self.addr if header.client is None else header.client
        self._switch(self.gate_factory.client_protocol(client, header.origin))

    def _refuse(self, detail: str) -> None:
        decision = deny(events.REASON_PROXY, detail)
        self._switch(self.gate_factory.refuse(self.proxy, decision))

    def _switch(self, protocol: Protocol | None) -> None:
        """Give the connection to ``protocol``, or close it."""
        if self._lost:
            return
        transport = self.transport
        if protocol is None:
            transport.loseConnection()
            return
        # Reading resumes before the hand-over, as the access gate does: the
        # new protocol may pause or hand the socket off in connectionMade.
        transport.startReading()
        twistedprivate.switch_protocol(transport, protocol)
        protocol.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        """Never called: Twisted does not read while the header is read."""

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._lost = True
        self._stop()

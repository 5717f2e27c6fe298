"""
Serving a service with a user's own Twisted protocol factory.

At assembly ``build_factory(context)`` returns the factory (see
``superd.config.userproto`` for how a service names it); each admitted
connection gets ``factory.buildProtocol(addr)``.  It is one more
``IStreamHandler``: access control, limits, TLS and logging apply exactly as
to builtins.  A factory that fails at assembly makes the service
unavailable; one that raises (or returns None) for a connection refuses
that connection, logged, and the daemon carries on.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.config.model import ServiceConfig
from superd.config.userproto import UserContext, UserProtocolError
from superd.core import lazytls
from superd.core.interfaces import IStreamHandler
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session, UnixPeer
from superd.observe import events

__all__ = ["UserProtocolHandler"]


def _address(peer: Optional[Peer]) -> Any:
    if peer is None:
        return None
    if isinstance(peer, UnixPeer):
        # What the transport's getPeer() says of an unnamed client socket;
        # its credentials are the socket's (SO_PEERCRED of getHandle()).
        return UNIXAddress(None)
    kind = IPv6Address if ":" in peer.host else IPv4Address
    return kind("TCP", peer.host, peer.port)


def _watch(protocol: Any, made: Callable[[], None], lost: Callable[[], None]) -> None:
    # No wrapper between the transport and the user's protocol (a
    # ProtocolWrapper would hide the IHalfCloseableProtocol and
    # IHandshakeListener it may provide): hook this one instance.
    own_made, own_lost = protocol.connectionMade, protocol.connectionLost

    def connectionMade() -> None:
        made()
        own_made()

    def connectionLost(reason: Failure = connectionDone) -> None:
        try:
            own_lost(reason)
        finally:
            lost()

    protocol.connectionMade = connectionMade
    protocol.connectionLost = connectionLost


@implementer(IStreamHandler)
class UserProtocolHandler:
    """Serves a service with a user's protocol factory."""

    def __init__(self, service: ServiceConfig, runtime: Runtime, protocol: Any) -> None:
        self.service = service
        self.runtime = runtime
        # A user's protocol may call transport.startTLS(): the reactor needs
        # the TLS support it may have started without.
        lazytls.complete()
        context = UserContext(service, service.extensions.settings, runtime.reactor)
        try:
            factory = protocol.build_factory(context)
        except Exception as e:
            raise UserProtocolError(_attribute_of(service),
                                    f"{protocol.name}: build_factory failed: "
                                    f"{type(e).__name__}: {e}") from e
        if not IProtocolFactory.providedBy(factory):
            raise UserProtocolError(_attribute_of(service),
                                    f"{protocol.name}: build_factory returned {factory!r},"
                                    " not a protocol factory")
        self.factory = factory
        factory.doStart()

    def protocol_for(self, session: Session) -> Any:
        """The user factory's protocol for ``session`` (raising refuses it)."""
        protocol = self.factory.buildProtocol(_address(session.peer))
        if protocol is None:
            return None
        _watch(protocol, lambda: events.emit_session_start(self.service, 0, session.peer),
               lambda: self._ended(session))
        return protocol

    def _ended(self, session: Session) -> None:
        # Only a session superd ended itself (a ban, a reload) logs EXIT.
        if session.end_reason is not None and not session.ended:
            duration = max(0.0, self.runtime.seconds() - session.started)
            events.emit_session_exit(self.service, 0, 0, None, duration, session.end_reason)
        session.end()

    def __repr__(self) -> str:
        return f"<UserProtocolHandler {self.service.id} {self.factory!r}>"


def _attribute_of(service: ServiceConfig) -> str:
    return "factory" if service.extensions.factory is not None else "plugin"

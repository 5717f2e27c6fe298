"""
Choosing what serves each configured service: its handler (builtin,
spawned server, sensor, redirect, tcpmux, a user's protocol, any of them
under TLS), the access-controlled factory around it, and one ``Listener``
per listen address (or the ``wait = yes`` services).

A handler that cannot be built (a user's factory that raises, a TLS key that
does not fit its certificate) raises ``Unavailable`` naming the attribute,
reported like any configuration error: that service fails, the others are
built (``superd.daemon.isolation``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Sequence, Tuple

import attrs
from twisted.internet.interfaces import IListeningPort

from superd.access.factory import AccessControlledDatagramProtocol, AccessControlledFactory
from superd.access.state import AccessState
from superd.config.errors import Problem
from superd.config.model import Configuration, ServiceConfig, ServiceKind, SocketType
from superd.core.runtime import Runtime
from superd.daemon.parts import Parts
from superd.handlers.builtins import registry
from superd.handlers.spawn.errors import SpawnSetupError
from superd.net.address import ListenAddress
from superd.net.listener import IListener, Listener
from superd.net.sockets import listen_addresses, listen_datagram, listen_stream
from superd.proc.table import ProcessTable

if TYPE_CHECKING:
    from superd.handlers.spawn.handler import ExternalHandler
    from superd.handlers.spawn.wait import WaitService
    from superd.handlers.tcpmux import TcpmuxHandler

# What serves only some configurations -- spawned servers, wait = yes, PROXY
# headers, tcpmux, users' protocols, TLS -- is imported by the first service
# that needs it, so a daemon holds the code of the features it runs.

__all__ = ["SUPERD_BUILDERS", "Assembly", "Builders", "Failure", "Group", "Unavailable",
           "problem_of"]

#: A configured service and its children (listeners or wait = yes services).
Group = Tuple[ServiceConfig, List[IListener]]
#: A service whose handler cannot be built, and the problem that says why.
Failure = Tuple[ServiceConfig, Problem]


def stream_factory(service: ServiceConfig, handler: Any,
                   access: AccessState) -> AccessControlledFactory:
    """``superd.access.proxied.stream_factory``, imported for the first
    service with ``proxy_protocol``."""
    if service.extensions.proxy is None:
        return AccessControlledFactory(service, handler, access)
    from superd.access.proxied import stream_factory as proxied_factory

    return proxied_factory(service, handler, access)


def external_handler(service: ServiceConfig, runtime: Runtime,
                     processes: ProcessTable) -> "ExternalHandler":
    """The handler spawning ``service``'s server for each connection."""
    from superd.handlers.spawn.handler import ExternalHandler

    return ExternalHandler(service, runtime, processes)


def wait_service(service: ServiceConfig, bind_host: str, access: AccessState,
                 processes: ProcessTable) -> "WaitService":
    """The ``wait = yes`` service of ``service``'s socket on ``bind_host``."""
    from superd.handlers.spawn.wait import wait_service as build

    return build(service, bind_host, access, processes)


class Unavailable(Exception):
    """A service's handler cannot be built; ``attribute`` is the line to fix."""

    def __init__(self, attribute: str, message: str) -> None:
        self.attribute = attribute
        self.message = message
        super().__init__(message)


@attrs.frozen
class Builders:
    """
    What the assembly builds each part with.  The defaults are superd's own;
    tests pass recorders here to see what is built for which service.
    """

    stream_factory: Callable[..., Any] = stream_factory
    datagram_protocol: Callable[..., Any] = AccessControlledDatagramProtocol
    stream_builtin: Callable[..., Any] = registry.stream_handler
    datagram_builtin: Callable[..., Any] = registry.datagram_handler
    external: Callable[..., Any] = external_handler
    wait_service: Callable[..., Any] = wait_service


#: The builders of the running daemon.
SUPERD_BUILDERS = Builders()


@attrs.define
class Assembly:
    """Builds the children of each service of ``config`` with the daemon's ``parts``."""

    parts: Parts
    config: Configuration
    builders: Builders = SUPERD_BUILDERS

    @property
    def runtime(self) -> Runtime:
        """The reactor and the command-line settings."""
        return self.parts.runtime

    def build(self, services: Sequence[ServiceConfig]) -> Tuple[List[Group], List[Failure]]:
        """The children of each of ``services`` (nothing is bound yet), and
        those whose handler cannot be built, each with its problem."""
        groups: List[Group] = []
        failures: List[Failure] = []
        for service in services:
            try:
                groups.append((service, self.children(service)))
            except Unavailable as e:
                failures.append((service, problem_of(service, e)))
            except SpawnSetupError as e:
                failures.append((service, problem_of(service, Unavailable(e.attribute, e.message))))
        return groups, failures

    def children(self, service: ServiceConfig) -> List[IListener]:
        """The listener services for ``service``; raises ``Unavailable``."""
        if service.kind is ServiceKind.TCPMUX_CLIENT:
            return []  # no socket of its own: the tcpmux service reaches it
        if service.kind is ServiceKind.EXTERNAL and service.wait:
            return [self.builders.wait_service(service, address.host, self.parts.access,
                                               self.parts.processes)
                    for address in self._addresses(service)]
        handler = self.handler(service)
        if service.socket_type is SocketType.STREAM:
            return self._stream_listeners(service, handler)
        return self._datagram_listeners(service, handler)

    def handler(self, service: ServiceConfig) -> Any:
        """The handler serving ``service`` (None: a sensor), under TLS if configured."""
        if service.extensions.tls is None:
            return self._served_handler(service)
        # Imported only when a service uses TLS: pyOpenSSL and its libraries are large.
        from superd.config.tlscontext import TLSSetupError
        from superd.handlers.tls.protocol import TLSHandler

        if service.socket_type is not SocketType.STREAM or service.wait:
            raise Unavailable("tls_cert", "TLS needs socket_type = stream and wait = no")
        handler = self._served_handler(service, relay=True)
        if handler is None:
            return None
        try:
            return TLSHandler(service, handler, self.runtime, self.parts.certificates)
        except TLSSetupError as e:
            raise Unavailable(e.attribute, str(e)) from e

    def _served_handler(self, service: ServiceConfig, relay: bool = False) -> Any:
        """The handler serving ``service`` without TLS (None: a sensor).

        ``relay``: the connection will not be a plain socket (TLS), so an
        external server is fed through a pipe instead of being handed it.
        """
        kind = service.kind
        if kind is ServiceKind.SENSOR:
            return None
        if kind is ServiceKind.REDIRECT:
            # Imported when used: relays import Twisted's TLS (and OpenSSL).
            from superd.handlers.redirect import RedirectHandler

            return RedirectHandler(service, self.runtime)
        if kind is ServiceKind.PROTOCOL:
            return self._user_handler(service)
        if service.is_internal and service.name == "tcpmux":
            return self._tcpmux_handler(service)
        if service.is_internal and service.socket_type is SocketType.STREAM:
            return self.builders.stream_builtin(service, self.runtime)
        if service.is_internal:
            return self.builders.datagram_builtin(service, self.runtime,
                                                  self.config.protected_ports)
        if service.socket_type is SocketType.DGRAM:
            raise Unavailable("wait", "datagram external servers need wait = yes")
        if relay:
            from superd.handlers.tls.pipe import PipeHandler

            return PipeHandler(service, self.runtime, self.parts.processes)
        return self.builders.external(service, self.runtime, self.parts.processes)

    def _user_handler(self, service: ServiceConfig) -> Any:
        if service.socket_type is not SocketType.STREAM or service.wait:
            raise Unavailable("factory", "user protocols are stream services with wait = no")
        from superd.config.userproto import UserProtocolError, protocol_of
        from superd.handlers.userproto import UserProtocolHandler

        try:
            return UserProtocolHandler(service, self.runtime, protocol_of(service))
        except UserProtocolError as e:
            raise Unavailable(e.attribute, str(e)) from e

    def _tcpmux_handler(self, service: ServiceConfig) -> "TcpmuxHandler":
        from superd.handlers.tcpmux import TcpmuxHandler

        # Under TLS the socket cannot be handed to a child: relay it.
        relay = service.extensions.tls is not None
        clients: List[Tuple[ServiceConfig, Any]] = []
        for client in self.config.services:
            if client.is_mux_client:
                handler = self._served_handler(client, relay=relay)
                clients.append((client, self.builders.stream_factory(client, handler,
                                                                     self.parts.access)))
        return TcpmuxHandler(service, self.runtime, clients)

    def _addresses(self, service: ServiceConfig) -> Sequence[ListenAddress]:
        return listen_addresses(service, self.runtime.options.backlog)

    def _stream_listeners(self, service: ServiceConfig, handler: Any) -> List[IListener]:
        # One factory for every address of the service: counts are per block.
        factory = self.builders.stream_factory(service, handler, self.parts.access)
        reactor = self.runtime.reactor
        if service.extensions.tls is not None:
            return self._tls_listeners(service, handler, factory)

        def open_port(address: ListenAddress) -> IListeningPort:
            return listen_stream(reactor, address, factory)

        return [Listener(address, open_port, factory) for address in self._addresses(service)]

    def _tls_listeners(self, service: ServiceConfig, handler: Any,
                       factory: Any) -> List[IListener]:
        """TLS services listen on sockets they may share with others (tls_sni)."""
        from superd.handlers.tls.sni import TLSRoute
        from superd.net.shared import SharedListener

        reactor = self.runtime.reactor
        route = TLSRoute(service, factory, handler)

        def open_port(address: ListenAddress, target: Any) -> IListeningPort:
            return listen_stream(reactor, address, target)

        return [SharedListener(address, open_port, route, self.parts.shared_ports)
                for address in self._addresses(service)]

    def _datagram_listeners(self, service: ServiceConfig, handler: Any) -> List[IListener]:
        reactor = self.runtime.reactor

        def listener(address: ListenAddress) -> Listener:
            # A DatagramProtocol has one transport, so one per address.
            protocol = self.builders.datagram_protocol(service, handler, self.parts.access)
            return Listener(address, lambda a: listen_datagram(reactor, a, protocol), protocol)

        return [listener(address) for address in self._addresses(service)]


def problem_of(service: ServiceConfig, error: Unavailable) -> Problem:
    """The configuration problem that names why ``service`` cannot run."""
    where = service.line_of(error.attribute)
    return Problem(where.file, where.line, service.name, error.attribute, error.message)


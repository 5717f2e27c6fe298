"""
Choosing what serves each configured service: its handler (builtin,
spawned server, sensor, or an extension: redirect, tcpmux, user protocol,
TLS), the access-controlled factory around it, and one ``Listener`` per
listen address (or the ``wait = yes`` services).

Collaborators are imported when a service needs them; a build without one
refuses that service by name (``Unavailable``) instead of silently leaving
it out.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, List, Optional, Sequence

from twisted.application.service import IService
from twisted.internet.interfaces import IListeningPort

from superd.config.errors import Problem
from superd.config.model import Configuration, ServiceConfig, SocketType
from superd.core.runtime import Runtime
from superd.net.listener import Listener
from superd.net.sockets import ListenAddress, listen_addresses, listen_datagram, listen_stream

__all__ = [
    "NOT_BUILT",
    "Unavailable",
    "problem_of",
    "protected_ports",
    "service_children",
    "unavailable_problems",
]

NOT_BUILT = "not available in this build"


class Unavailable(Exception):
    """A service needs something this build (or platform) cannot provide."""

    def __init__(self, attribute: str, message: str) -> None:
        self.attribute = attribute
        self.message = message
        super().__init__(message)


def _collaborator(module: str, attribute: str, what: str) -> ModuleType:
    """Import ``module``, or refuse the service if this build lacks it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not module.startswith(e.name):
            raise  # a bug inside the module, not a missing module
        raise Unavailable(attribute, f"{what} are {NOT_BUILT}") from e


def protected_ports(config: Configuration) -> frozenset[int]:
    """The ports of every UDP builtin: UDP builtins never answer them."""
    return frozenset(
        s.port for s in config.services
        if s.socket_type is SocketType.DGRAM and s.kind == "builtin" and s.port
    )


def _builtin_handler(service: ServiceConfig, runtime: Runtime,
                     protected: frozenset[int]) -> Any:
    registry = _collaborator("superd.handlers.builtins.registry", "type", "internal services")
    if not registry.is_builtin(service.name, service.socket_type):
        raise Unavailable("type", f"no such internal service: "
                                  f"{service.name}/{service.socket_type.value}")
    if service.socket_type is SocketType.STREAM:
        return registry.stream_handler(service, runtime)
    return registry.datagram_handler(service, runtime, protected)


def _handler(service: ServiceConfig, runtime: Runtime, protected: frozenset[int],
             services: Sequence[ServiceConfig] = ()) -> Any:
    """The handler serving ``service`` (None: sensor), under TLS if configured."""
    # Redirect, tcpmux, users' protocols and TLS (issue 6) live in superd.daemon.extensions.
    extensions = importlib.import_module("superd.daemon.extensions")
    handler = extensions.stream_handler(service, runtime, services)
    if handler is None:
        handler = _served_handler(service, runtime, protected)
    return extensions.with_tls(service, handler, runtime)


def _served_handler(service: ServiceConfig, runtime: Runtime, protected: frozenset[int]) -> Any:
    """The IStreamHandler/IDatagramHandler for a builtin or external server (None: sensor)."""
    if service.kind == "sensor":
        return None
    if service.kind == "builtin":
        return _builtin_handler(service, runtime, protected)
    if service.socket_type is SocketType.DGRAM:
        raise Unavailable("wait", "datagram external servers need wait = yes")
    spawn = _collaborator("superd.handlers.spawn.handler", "server", "external servers")
    return spawn.ExternalHandler(service, runtime)


def _wait_services(service: ServiceConfig, runtime: Runtime) -> List[IService]:
    wait = _collaborator("superd.handlers.spawn.wait", "server", "external servers")
    return [wait.wait_service(service, address.host, runtime)
            for address in listen_addresses(service, runtime.options.backlog)]


def _access_factory(service: ServiceConfig, handler: Any, runtime: Runtime) -> Any:
    factory = _collaborator("superd.access.factory", "only_from", "access-controlled services")
    return factory.AccessControlledFactory(service, handler, runtime)


def _stream_listeners(service: ServiceConfig, handler: Any, runtime: Runtime) -> List[IService]:
    # One factory for every address of the service: counts are per service.
    factory = _access_factory(service, handler, runtime)
    reactor = runtime.reactor

    def open_port(address: ListenAddress) -> IListeningPort:
        return listen_stream(reactor, address, factory)

    return [Listener(address, open_port, factory)
            for address in listen_addresses(service, runtime.options.backlog)]


def _datagram_listeners(service: ServiceConfig, handler: Any, runtime: Runtime) -> List[IService]:
    access = _collaborator("superd.access.factory", "only_from", "access-controlled services")
    reactor = runtime.reactor

    def listener(address: ListenAddress) -> Listener:
        # A DatagramProtocol has one transport, so one per address.
        protocol = access.AccessControlledDatagramProtocol(service, handler, runtime)
        return Listener(address, lambda a: listen_datagram(reactor, a, protocol), protocol)

    return [listener(address) for address in listen_addresses(service, runtime.options.backlog)]


def _unsupported_kind(service: ServiceConfig) -> Optional[Unavailable]:
    if service.socket_type not in (SocketType.STREAM, SocketType.DGRAM):
        return Unavailable("socket_type",
                           f"socket_type {service.socket_type.value} is not supported")
    return None


def service_children(service: ServiceConfig, runtime: Runtime,
                     protected: frozenset[int],
                     services: Sequence[ServiceConfig] = ()) -> List[IService]:
    """The listener services for one configured service; raises ``Unavailable``."""
    unsupported = _unsupported_kind(service)
    if unsupported is not None:
        raise unsupported
    if service.kind == "tcpmux-client":
        return []  # no socket of its own: the tcpmux service reaches it
    if service.kind == "external" and service.wait:
        return _wait_services(service, runtime)
    handler = _handler(service, runtime, protected, services)
    if service.socket_type is SocketType.STREAM:
        return _stream_listeners(service, handler, runtime)
    return _datagram_listeners(service, handler, runtime)


def problem_of(service: ServiceConfig, error: Unavailable) -> Problem:
    """The configuration problem that names why ``service`` cannot run."""
    where = service.line_of(error.attribute)
    return Problem(where.file, where.line, service.name, error.attribute, error.message)


def unavailable_problems(config: Configuration) -> List[Problem]:
    """
    The services of ``config`` this build cannot run (redirect, tcpmux, raw
    sockets), found without building or binding anything: for ``superd check``.
    """
    found = ((service, _unsupported_kind(service)) for service in config.services)
    return [problem_of(service, error) for service, error in found if error is not None]

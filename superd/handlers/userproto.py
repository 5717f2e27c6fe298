"""
Users' own Twisted protocols as superd services.

A service names its protocol with ``type = INTERNAL`` and either

* ``factory = package.module:name`` -- ``name`` is an object providing
  ``ISuperdProtocol``, or a plain callable ``name(context)`` returning an
  ``IProtocolFactory`` (its own attributes, if any, declared in a
  ``superd_attributes`` mapping on it); or
* ``plugin = NAME`` -- a ``twisted.plugin`` plugin (an object providing
  ``twisted.plugin.IPlugin`` and ``ISuperdProtocol``) whose ``name`` is
  ``NAME``, in a module of some ``twisted/plugins/`` directory on the path.

The protocol's own attributes are written in the service block like any
other and parsed at load by the schema it declares (errors name the file and
line).  At assembly ``build_factory(context)`` returns the factory; each
admitted connection gets ``factory.buildProtocol(addr)``.  It is one more
``IStreamHandler``: access control, limits, TLS and logging apply exactly as
to builtins.  A factory that fails at load is a configuration error; one
that raises (or returns None) for a connection refuses that connection,
logged, and the daemon carries on.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from superd.config.model import ServiceConfig
from superd.core.interfaces import IStreamHandler
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.observe import events

__all__ = [
    "ISuperdProtocol",
    "UserAttribute",
    "UserContext",
    "UserProtocolError",
    "UserProtocolHandler",
    "find_plugin",
    "parse_settings",
    "resolve",
]

#: ``error(attribute, message)`` records a configuration problem.
ErrorReporter = Callable[[str, str], None]


class ISuperdProtocol(Interface):
    """A user's protocol that superd can serve as a service."""

    name = Attribute("The name ``plugin = NAME`` selects it by (plugins).")
    attributes = Attribute(
        "Mapping of the service attributes it accepts: name -> ``UserAttribute``"
        " (or a parser: values tuple -> value, raising ValueError).")

    def build_factory(context):  # type: ignore[no-untyped-def]
        """Return the ``IProtocolFactory`` serving the service of ``context``."""


@attrs.frozen
class UserAttribute:
    """One attribute a user protocol accepts."""

    #: Parses the attribute's words; raises ``ValueError`` with a message.
    parse: Callable[[Tuple[str, ...]], Any] = tuple
    required: bool = False
    #: The value when the attribute is not written (and not required).
    default: Any = None


@attrs.frozen
class UserContext:
    """What a user protocol's ``build_factory`` is given."""

    service: ServiceConfig
    #: Its own attributes, parsed (defaults filled in).
    settings: Mapping[str, Any]
    #: The injected reactor (IReactorTime and friends): use it, not the global one.
    reactor: Any


class UserProtocolError(Exception):
    """A user protocol cannot be found or set up; ``attribute`` is the line to fix."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute


@implementer(ISuperdProtocol)
class _CallableProtocol:
    """A plain ``callable(context) -> factory`` seen as an ``ISuperdProtocol``."""

    def __init__(self, function: Callable[[UserContext], Any], name: str) -> None:
        self.name = name
        self.attributes = dict(getattr(function, "superd_attributes", {}))
        self.build_factory = function


def resolve(text: str) -> Any:
    """The ``ISuperdProtocol`` named by ``package.module:name``."""
    module_name, _, name = text.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in name.split("."):
            target = getattr(target, part)
    except Exception as e:  # the user's module may raise anything on import
        raise UserProtocolError("factory", f"cannot load {text}: {type(e).__name__}: {e}") from e
    if ISuperdProtocol.providedBy(target):
        return target
    if callable(target):
        return _CallableProtocol(target, text)
    raise UserProtocolError("factory", f"{text} is neither callable nor an ISuperdProtocol")


def find_plugin(name: str, package: Any = None) -> Any:
    """The ``ISuperdProtocol`` plugin called ``name`` (``twisted.plugin``; in
    ``package``, by default every ``twisted/plugins`` directory on the path)."""
    from twisted.plugin import getPlugins

    try:
        found = [p for p in getPlugins(ISuperdProtocol, package)
                 if getattr(p, "name", None) == name]
    except Exception as e:
        raise UserProtocolError("plugin", f"cannot list plugins: {e}") from e
    if not found:
        raise UserProtocolError("plugin", f"no ISuperdProtocol plugin named {name!r}")
    return found[0]


def _as_attribute(declared: Any) -> UserAttribute:
    return declared if isinstance(declared, UserAttribute) else UserAttribute(parse=declared)


def parse_settings(protocol: Any, extra: Mapping[str, Tuple[str, ...]],
                   error: ErrorReporter) -> Dict[str, Any]:
    """The protocol's own attributes from ``extra``, parsed by its schema."""
    settings: Dict[str, Any] = {}
    for name, declared in dict(protocol.attributes).items():
        spec = _as_attribute(declared)
        if name not in extra:
            if spec.required:
                error(name, f"missing: {protocol.name} needs {name}")
            settings[name] = spec.default
            continue
        try:
            settings[name] = spec.parse(tuple(extra[name]))
        except ValueError as e:
            error(name, str(e))
    return settings


def _address(peer: Optional[Peer]) -> Any:
    if peer is None:
        return None
    kind = IPv6Address if ":" in peer.host else IPv4Address
    return kind("TCP", peer.host, peer.port)


def _watch(protocol: Any, made: Callable[[], None], lost: Callable[[], None]) -> None:
    # No wrapper between the transport and the user's protocol (a
    # ProtocolWrapper would hide IHalfCloseableProtocol and
    # IHandshakeListener, twisted-notes section 4): hook this one instance.
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
               session.end)
        return protocol

    def __repr__(self) -> str:
        return f"<UserProtocolHandler {self.service.id} {self.factory!r}>"


def _attribute_of(service: ServiceConfig) -> str:
    return "factory" if service.extensions.factory is not None else "plugin"


def protocol_of(service: ServiceConfig) -> Any:
    """The ``ISuperdProtocol`` a service names (``factory`` or ``plugin``)."""
    ext = service.extensions
    if ext.factory is not None:
        return resolve(ext.factory)
    assert ext.plugin is not None
    return find_plugin(ext.plugin)

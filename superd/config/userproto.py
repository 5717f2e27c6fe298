"""
Users' own Twisted protocols, as the configuration sees them.

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
line).  Finding the protocol imports the user's module, which is why this
happens at load: a factory that cannot be imported is a configuration error.
Serving it is ``superd.handlers.userproto``; plugin authors import these
names from ``superd.api``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Mapping, Tuple

import attrs
from zope.interface import Attribute, Interface, implementer

from superd.config.model import ServiceConfig

__all__ = [
    "ISuperdProtocol",
    "UserAttribute",
    "UserContext",
    "UserProtocolError",
    "find_plugin",
    "parse_settings",
    "protocol_of",
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


def protocol_of(service: ServiceConfig) -> Any:
    """The ``ISuperdProtocol`` a service names (``factory`` or ``plugin``)."""
    ext = service.extensions
    if ext.factory is not None:
        return resolve(ext.factory)
    assert ext.plugin is not None
    return find_plugin(ext.plugin)

"""
Issue 6 in one seam: TLS termination, redirect, tcpmux and users' protocols.

Two calls for the loader and the assembly:

* ``check_extensions(values, extra, read_file, error, warn)`` -- at load, from a
  service's parsed attributes: reads the PEM files, imports a user's
  factory and parses its own attributes; every problem goes to ``error``
  with the attribute whose line it is on.  Returns ``Extensions``.
* ``stream_handler(service, runtime, services)`` -- at assembly: the
  ``IStreamHandler`` for a redirect, a user protocol or the tcpmux builtin,
  or None for services served elsewhere (builtins, external servers); and
  ``with_tls(service, handler, runtime)`` puts any handler under superd's TLS.

Assembly failures raise ``superd.daemon.assembly.Unavailable`` naming the
attribute, so they are reported like every configuration error.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Callable, Mapping, Optional, Sequence, Tuple

from superd.config.model import Extensions, ServiceConfig, SocketType
from superd.core.runtime import Runtime

__all__ = ["check_extensions", "is_user_protocol", "stream_handler", "with_tls"]

ErrorReporter = Callable[[str, str], None]


def is_user_protocol(values: Mapping[str, Any], invalid: AbstractSet[str] = frozenset()) -> bool:
    """True when the attributes name a user's protocol (no builtin needed), also
    when ``factory``/``plugin`` was written but invalid (already reported)."""
    return bool({"factory", "plugin"} & (values.keys() | invalid))


def _user_settings(values: Mapping[str, Any], extra: Mapping[str, Tuple[str, ...]],
                   error: ErrorReporter, warn: Optional[ErrorReporter]) -> Mapping[str, object]:
    from superd.handlers.userproto import UserProtocolError, find_plugin, parse_settings, resolve

    if "factory" in values and "plugin" in values:
        error("plugin", "write factory or plugin, not both")
        return {}
    if "INTERNAL" not in values.get("type", ()):
        attribute = "factory" if "factory" in values else "plugin"
        error(attribute, "a user protocol needs type = INTERNAL")
    try:
        protocol = resolve(values["factory"]) if "factory" in values \
            else find_plugin(values["plugin"])
    except UserProtocolError as e:
        error(e.attribute, str(e))
        return {}  # which attributes it declares is unknown: no warnings
    if warn is not None:
        from superd.config.draft import UNKNOWN_ATTRIBUTE

        declared = dict(protocol.attributes)
        for name in extra:
            if name not in declared:
                warn(name, UNKNOWN_ATTRIBUTE)
    return parse_settings(protocol, extra, error)


def check_extensions(values: Mapping[str, Any], extra: Mapping[str, Tuple[str, ...]],
                     read_file: Callable[[str], str], error: ErrorReporter,
                     warn: Optional[ErrorReporter] = None) -> Extensions:
    """
    The issue-6 settings of one service, checked; problems go to ``error``.
    For a user protocol, ``extra`` attributes its factory does not declare
    go to ``warn`` as unknown (the loader warns about the others' itself).
    """
    settings: Mapping[str, object] = {}
    if is_user_protocol(values):
        settings = _user_settings(values, extra, error, warn)
    if "redirect_timeout" in values and "redirect" not in values:
        error("redirect_timeout", "redirect_timeout needs redirect = host port")
    tls, upstream = None, None
    if any(name.startswith(("tls_", "redirect_tls")) for name in values):
        # pyOpenSSL is imported only by configurations that use TLS.
        from superd.config.tls import tls_settings, upstream_tls

        tls = tls_settings(values, read_file, error)
        upstream = upstream_tls(values, read_file, error)
    if tls is not None and (values.get("wait") is True or values.get("protocol") == "udp"
                            or values.get("socket_type") is SocketType.DGRAM):
        error("tls_cert", "TLS needs socket_type = stream and wait = no")
    if tls is not None:
        for banner in ("banner", "banner_success"):
            if banner in values:
                # The access layer writes banners before the handshake, in clear.
                error(banner, f"{banner} cannot be sent on a TLS service "
                              "(it would precede the handshake in clear text)")
    return Extensions(
        tls=tls,
        redirect_tls=upstream,
        redirect_timeout=values.get("redirect_timeout", 10.0),
        factory=values.get("factory"), plugin=values.get("plugin"), settings=settings,
    )


def _unavailable(attribute: str, message: str) -> Exception:
    from superd.daemon.assembly import Unavailable

    return Unavailable(attribute, message)


def _user_handler(service: ServiceConfig, runtime: Runtime) -> Any:
    from superd.handlers.userproto import UserProtocolError, UserProtocolHandler, protocol_of

    try:
        return UserProtocolHandler(service, runtime, protocol_of(service))
    except UserProtocolError as e:
        raise _unavailable(e.attribute, str(e)) from e


def stream_handler(service: ServiceConfig, runtime: Runtime,
                   services: Sequence[ServiceConfig] = ()) -> Optional[Any]:
    """The handler for a redirect, user protocol or tcpmux service; else None."""
    if service.kind == "redirect":
        from superd.handlers.redirect import RedirectHandler

        return RedirectHandler(service, runtime)
    if service.extensions.user_protocol:
        if service.socket_type is not SocketType.STREAM or service.wait:
            raise _unavailable("factory", "user protocols are stream services with wait = no")
        return _user_handler(service, runtime)
    if service.kind == "builtin" and service.name == "tcpmux":
        from superd.handlers.tcpmux import TcpmuxHandler

        return TcpmuxHandler(service, runtime, services)
    return None


def with_tls(service: ServiceConfig, handler: Any, runtime: Runtime) -> Any:
    """``handler`` under TLS terminated by superd when the service has ``tls_cert``."""
    if service.extensions.tls is None or handler is None:
        return handler
    from superd.handlers.tls.context import TLSSetupError
    from superd.handlers.tls.protocol import TLSHandler

    if service.socket_type is not SocketType.STREAM or service.wait:
        raise _unavailable("tls_cert", "TLS needs socket_type = stream and wait = no")
    if service.kind == "external":
        from superd.handlers.tls.pipe import PipeHandler

        # A TLS session cannot be handed to a child: relay it over a socket pair.
        handler = PipeHandler(service, runtime)
    try:
        return TLSHandler(service, handler, runtime)
    except TLSSetupError as e:
        raise _unavailable(e.attribute, str(e)) from e

"""
Checking the attributes of TLS, redirect and users' protocols at load.

``check_extensions(values, extra, read_file, error, warn)`` takes a service's
parsed attributes, reads the PEM files, finds a user's protocol and parses
its own attributes; every problem goes to ``error`` with the attribute whose
line it is on.  It returns the service's ``Extensions``.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Callable, Mapping, Optional, Tuple

from superd.config.attributes import unknown_attribute
from superd.config.model import Extensions, SocketType
from superd.config.proxy import proxy_settings, redirect_proxy

__all__ = ["check_extensions", "is_user_protocol"]

ErrorReporter = Callable[[str, str], None]


def is_user_protocol(values: Mapping[str, Any], invalid: AbstractSet[str] = frozenset()) -> bool:
    """True when the attributes name a user's protocol (no builtin needed), also
    when ``factory``/``plugin`` was written but invalid (already reported)."""
    return bool({"factory", "plugin"} & (values.keys() | invalid))


def _user_settings(values: Mapping[str, Any], extra: Mapping[str, Tuple[str, ...]],
                   error: ErrorReporter, warn: Optional[ErrorReporter]) -> Mapping[str, object]:
    from superd.config.userproto import UserProtocolError, find_plugin, parse_settings, resolve

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
        declared = dict(protocol.attributes)
        for name in extra:
            if name not in declared:
                message, meant = unknown_attribute(name, declared)
                (warn if meant is None else error)(name, message)
    return parse_settings(protocol, extra, error)


def check_extensions(values: Mapping[str, Any], extra: Mapping[str, Tuple[str, ...]],
                     read_file: Callable[[str], str], error: ErrorReporter,
                     warn: Optional[ErrorReporter] = None,
                     invalid: AbstractSet[str] = frozenset()) -> Extensions:
    """
    The issue-6 settings of one service, checked; problems go to ``error``.
    For a user protocol, ``extra`` attributes its factory does not declare
    go to ``warn`` as unknown, or to ``error`` when they look like a slip for
    a known name (the loader checks the others' itself).
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

        tls = tls_settings(values, read_file, error, warn)
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
        proxy=proxy_settings(values, invalid, error, warn),
        redirect_proxy=redirect_proxy(values, error),
    )

"""
Checking the PROXY protocol attributes of one service at load.

``proxy_protocol``, ``proxy_from`` and ``proxy_timeout`` make a service
read a PROXY header from its load balancer; ``redirect_proxy`` makes a
redirect send one upstream.  Each is checked alone by the attribute table;
here, the combinations that cannot work become errors on the line to fix.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Callable, Mapping, Optional

from superd.config.model import AddressKind, ProxySettings, SocketType

__all__ = ["proxy_settings", "redirect_proxy"]

ErrorReporter = Callable[[str, str], None]

_VERSIONS = {"v1": frozenset({1}), "v2": frozenset({2}), "any": frozenset({1, 2})}


def _stream_problem(values: Mapping[str, Any]) -> Optional[str]:
    """Why a PROXY header cannot reach superd on this service, if it cannot."""
    if values.get("protocol") == "udp" or values.get("socket_type") is SocketType.DGRAM:
        return "PROXY headers come only on socket_type = stream services"
    if values.get("wait") is True:
        return ("with wait = yes the server accepts its connections itself;"
                " superd never sees their PROXY headers")
    if values.get("tls_sni"):
        return ("tls_sni chooses the service from the TLS ClientHello, which must be"
                " the first bytes on the port; a PROXY header cannot come before it")
    if {"TCPMUX", "TCPMUXPLUS"} & set(values.get("type", ())):
        return ("the header comes before the service name: set proxy_protocol"
                " on the tcpmux service")
    return None


def _ident_problem(values: Mapping[str, Any]) -> Optional[str]:
    """USERID asks the peer's identd about the connection, which is the proxy's."""
    if "IDONLY" in values.get("flags", ()):
        return "IDONLY cannot work behind a proxy (the client's identd knows its" \
               " connection to the proxy, not to superd)"
    for name in ("log_on_success", "log_on_failure"):
        if "USERID" in values.get(name, ()):
            return f"USERID in {name} cannot work behind a proxy (the client's" \
                   " identd knows its connection to the proxy, not to superd)"
    return None


def proxy_settings(values: Mapping[str, Any], invalid: AbstractSet[str],
                   error: ErrorReporter,
                   warn: Optional[ErrorReporter] = None) -> Optional[ProxySettings]:
    """The service's ``ProxySettings`` (None: it reads no header); problems
    go to ``error(attribute, message)``, doubts to ``warn``."""
    written = values.get("proxy_protocol")
    if written is None:
        if "proxy_protocol" not in invalid:
            for name in ("proxy_from", "proxy_timeout"):
                if name in values:
                    error(name, f"{name} needs proxy_protocol = v1, v2 or any")
        return None
    for problem in (_stream_problem(values), _ident_problem(values)):
        if problem is not None:
            error("proxy_protocol", problem)
    sources = values.get("proxy_from")
    if sources is None and "proxy_from" not in invalid and warn is not None:
        warn("proxy_protocol", "no proxy_from: any source that reaches the port may"
                               " claim to be any client")
    for spec in sources or ():
        if spec.kind is not AddressKind.NETWORK:
            error("proxy_from", f"{spec.text}: proxy_from takes addresses and networks,"
                                " not host names (a proxy is trusted before any lookup)")
    return ProxySettings(_VERSIONS[written], None if sources is None else tuple(sources),
                         values.get("proxy_timeout", 5.0))


def redirect_proxy(values: Mapping[str, Any], error: ErrorReporter) -> Optional[int]:
    """``redirect_proxy`` as a version number, checked against the redirect."""
    written = values.get("redirect_proxy")
    if written is None:
        return None
    if "redirect" not in values:
        error("redirect_proxy", "redirect_proxy needs redirect = host port")
    elif values.get("redirect_tls") is True:
        error("redirect_proxy", "redirect_proxy cannot be combined with redirect_tls"
                                " (the header would have to precede the TLS handshake)")
    return 1 if written == "v1" else 2

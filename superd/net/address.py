"""
One socket a service listens on, as a value: worked out purely from the
service's ``bind``/``port``/``protocol``/``flags``/``v6only``, before anything
is bound (``superd.net.sockets``) or adopted from systemd
(``superd.net.activation``).
"""

from __future__ import annotations

import socket
from typing import Optional

import attrs

from superd.config.model import Location, SocketType, UnixSocket

__all__ = ["ListenAddress"]


@attrs.frozen
class ListenAddress:
    """One socket a service listens on."""

    service_id: str
    #: The service's name (what follows ``service``; ids may differ).
    name: str
    host: str
    port: int
    socket_type: SocketType
    #: Where the ``bind`` (or ``port``, or the service header) was written.
    location: Location
    #: None: leave the kernel default (dual-stack on Linux for ``::``).
    v6only: Optional[bool] = None
    backlog: int = 1024
    nodelay: bool = False
    keepalive: bool = False
    #: xinetd: a service without ``bind`` whose IPv6 socket cannot be made
    #: (a kernel without IPv6) listens on IPv4 instead.
    ipv4_fallback: bool = False
    #: ``bind = unix:PATH``: a UNIX-domain stream socket (``host`` is its
    #: path, ``port`` 0), with the mode and owner its file gets.
    unix: Optional[UnixSocket] = None

    @property
    def family(self) -> socket.AddressFamily:
        """AF_UNIX for a UNIX socket, AF_INET6 for an IPv6 literal, else AF_INET."""
        if self.unix is not None:
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def protocol(self) -> str:
        """``tcp``, ``udp`` or ``unix``."""
        if self.unix is not None:
            return "unix"
        return "tcp" if self.socket_type is SocketType.STREAM else "udp"

    def describe(self, port: Optional[int] = None) -> str:
        """``tcp [::1]:7`` / ``udp 127.0.0.1:7`` / ``unix /run/echo.sock``: the
        address as people write it."""
        if self.unix is not None:
            return f"unix {self.host}"
        shown = self.port if port is None else port
        host = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"{self.protocol} {host}:{shown}"

    @property
    def needs_own_socket(self) -> bool:
        """True when no endpoint string can express this socket's options."""
        v6only_matters = self.v6only is not None and self.family == socket.AF_INET6
        return v6only_matters or self.nodelay or self.keepalive

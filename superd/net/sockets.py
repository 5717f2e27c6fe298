"""
Where a service listens, and how its listening sockets are made.

A ``ListenAddress`` is one (address, port, socket type) of one service, worked
out purely from its ``bind``/``port``/``protocol``/``flags``/``v6only``.  Stream
services listen on a ``superd.net.takingport.TakingPort`` (``tcp.Port`` letting the
factory take an accepted socket for a child), bound as ``listenTCP`` binds,
or on a socket made here when the configuration asks for something
``listenTCP`` cannot do: an explicit ``v6only``, or the
``NODELAY``/``KEEPALIVE`` flags (set on the listening socket so that every
accepted connection inherits them, as Linux does and as xinetd relies on).

Datagram services listen on a ``superd.net.datagramport.DatagramPort``
(``udp.Port`` reading a bounded number of datagrams per wake-up).

A ``bind = unix:PATH`` service listens on a UNIX-domain stream socket made
by ``superd.net.unixsocket`` (stale files replaced safely, mode and owner
set before it listens) and served by a ``superd.net.unixport.TakingUnixPort``.

Every failure to listen becomes a ``BindError`` that names the service, the
address and the configuration line, so startup can stop with a message a
person can act on.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
from typing import Any, Callable, Optional, Tuple, TypeVar

import attrs
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import Logger
from twisted.python.failure import Failure

from superd.config.model import ServiceConfig, SocketType
from superd.net import activation
from superd.net.address import ListenAddress
from superd.net.datagramport import adopt_datagram, listen_datagram_port
from superd.net.takingport import adopt_taking, listen_taking
from superd.observe import events
from superd.observe.events import EV_LISTENING

__all__ = [
    "BindError",
    "ListenAddress",
    "bind_socket",
    "emit_listening",
    "endpoint_description",
    "listen_addresses",
    "listen_datagram",
    "listen_stream",
    "open_with_fallback",
]

_log = Logger(namespace="superd.listen")

_T = TypeVar("_T")

#: Largest datagram an internal UDP service reads (the IPv4 maximum).
MAX_DATAGRAM = 65535


class BindError(Exception):
    """A listening socket could not be made; the message says which and why."""

    def __init__(self, address: ListenAddress, reason: str,
                 code: Optional[int] = None) -> None:
        self.address = address
        self.reason = reason
        self.errno = code
        super().__init__(
            f"{address.location}: service {address.service_id}: "
            f"cannot listen on {address.describe()}: {reason}"
        )


def _wildcard(service: ServiceConfig) -> str:
    """The any-address for a service without ``bind`` (xinetd: IPv6 unless IPv4 only)."""
    if "IPv4" in service.flags and "IPv6" not in service.flags:
        return "0.0.0.0"
    return "::"


def listen_addresses(service: ServiceConfig, backlog: int = 1024) -> Tuple[ListenAddress, ...]:
    """Every address ``service`` listens on: one per ``bind`` value, the
    wildcard, or its UNIX socket."""
    if service.unix is not None:
        return (ListenAddress(
            service_id=service.id, name=service.name, host=service.unix.path, port=0,
            socket_type=service.socket_type, location=service.line_of("bind"),
            backlog=backlog, unix=service.unix),)
    if service.port is None:
        raise ValueError(f"service {service.id} has no port")
    hosts = service.bind or (_wildcard(service),)
    # Only IPv6 asked for (flags = IPv6 alone) means no fallback, as xinetd.
    fallback = not service.bind and service.flags & {"IPv4", "IPv6"} != {"IPv6"}
    location = service.lines.get("bind") or service.line_of("port")
    return tuple(
        ListenAddress(
            service_id=service.id, name=service.name, host=str(ipaddress.ip_address(host)),
            port=service.port, socket_type=service.socket_type,
            location=location, v6only=service.v6only, backlog=backlog,
            nodelay="NODELAY" in service.flags,
            keepalive="KEEPALIVE" in service.flags,
            ipv4_fallback=fallback and host == "::",
        )
        for host in hosts
    )


def endpoint_description(address: ListenAddress) -> str:
    """The Twisted endpoint string for a stream ``address`` (colons escaped)."""
    interface = address.host.replace(":", "\\:")
    return f"tcp:{address.port}:interface={interface}:backlog={address.backlog}"


def _socket_kind(address: ListenAddress) -> int:
    return socket.SOCK_STREAM if address.socket_type is SocketType.STREAM else socket.SOCK_DGRAM


def _configure(sock: socket.socket, address: ListenAddress) -> None:
    if address.socket_type is SocketType.STREAM:
        # Not for UDP: there SO_REUSEADDR lets a second daemon bind the same
        # port silently instead of failing loudly.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if address.family == socket.AF_INET6 and address.v6only is not None:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(address.v6only))
    if address.nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if address.keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def bind_socket(address: ListenAddress) -> socket.socket:
    """
    A bound (and, for streams, listening) non-blocking socket for ``address``.

    For wait=yes servers, which need the socket itself, and for options no
    endpoint string expresses.  A socket passed by systemd for ``address``
    is adopted instead of binding (superd.net.activation).  Raises ``BindError``.
    """
    inherited = activation.claim(address)
    if inherited is not None:
        return inherited
    if address.unix is not None:
        from superd.net import unixsocket  # UNIX socket services only

        try:
            return unixsocket.bind_unix(address.unix, address.backlog)
        except unixsocket.SocketFileError as e:
            raise BindError(address, e.reason, e.errno) from e
    try:
        sock = socket.socket(address.family, _socket_kind(address))
    except OSError as e:
        raise BindError(address, e.strerror or str(e), e.errno) from e
    try:
        _configure(sock, address)
        sock.bind((address.host, address.port))
        if address.socket_type is SocketType.STREAM:
            sock.listen(address.backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise BindError(address, e.strerror or str(e), e.errno) from e
    return sock


def _cannot_listen(address: ListenAddress, error: CannotListenError) -> BindError:
    cause = error.socketError
    if isinstance(cause, OSError):
        return BindError(address, cause.strerror or str(cause), cause.errno)
    return BindError(address, str(cause))


def _listen_endpoint(reactor: Any, address: ListenAddress, factory: Any) -> IListeningPort:
    # Imported here: importing endpoints consumes systemd's LISTEN_FDS,
    # which only the daemon may do (superd.net.activation).
    from twisted.internet.endpoints import serverFromString

    outcome: list[Any] = []
    serverFromString(reactor, endpoint_description(address)).listen(factory).addBoth(outcome.append)
    if not outcome:
        raise BindError(address, "the endpoint did not listen synchronously")
    result = outcome[0]
    if isinstance(result, Failure):
        if isinstance(result.value, CannotListenError):
            raise _cannot_listen(address, result.value)
        result.raiseException()
    port: IListeningPort = result
    return port


def _listen_taking(reactor: Any, address: ListenAddress, factory: Any) -> IListeningPort:
    # What reactor.listenTCP / adoptStreamPort do, with superd's port class.
    # IPv6 sockets are bound here: Twisted passes an IPv6 literal through
    # getaddrinfo, which loads Python's IDNA codec tables for good.
    if (not address.needs_own_socket and not activation.inherits(address)
            and address.family != socket.AF_INET6):
        try:
            return listen_taking(reactor, address.port, factory, address.backlog, address.host)
        except CannotListenError as e:
            raise _cannot_listen(address, e) from e
    sock = bind_socket(address)
    try:
        return adopt_taking(reactor, sock.fileno(), sock.family, factory)
    finally:
        sock.close()  # the port keeps its own dup


def _listen_unix(reactor: Any, address: ListenAddress, factory: Any) -> IListeningPort:
    # Every reactor (test fakes too) gets superd's port: Twisted's fakes
    # cannot adopt a UNIX socket, and the port needs only addReader.
    from superd.net import unixsocket
    from superd.net.unixport import adopt_unix

    sock = bind_socket(address)
    try:
        # The file's mode now: superd's socket_mode, or what systemd gave it.
        mode = stat.S_IMODE(os.stat(address.host).st_mode)
        return adopt_unix(reactor, sock.fileno(), factory, mode=mode,
                          backlog=address.backlog)
    except OSError as e:
        unixsocket.release(address.host)  # only a file superd made
        raise BindError(address, e.strerror or str(e), e.errno) from e
    finally:
        sock.close()  # the port keeps its own dup


def listen_stream(reactor: Any, address: ListenAddress, factory: Any) -> IListeningPort:
    """
    Listen for connections on ``address`` with ``factory``; raises ``BindError``.

    On a real reactor the port is a ``superd.net.takingport.TakingPort``, so
    that a connection handed to a child never becomes a Twisted transport;
    other reactors (test fakes) get the endpoint or ``adoptStreamPort``.  A
    UNIX socket is always served by a ``superd.net.unixport.TakingUnixPort``.
    """
    if address.unix is not None:
        return _listen_unix(reactor, address, factory)
    if isinstance(reactor, PosixReactorBase):
        return _listen_taking(reactor, address, factory)
    if not address.needs_own_socket and not activation.inherits(address):
        return _listen_endpoint(reactor, address, factory)
    sock = bind_socket(address)
    try:
        port: IListeningPort = reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
    finally:
        sock.close()  # the reactor keeps its own dup
    return port


def listen_datagram(reactor: Any, address: ListenAddress, protocol: Any) -> IListeningPort:
    """
    Receive datagrams on ``address`` with ``protocol``; raises ``BindError``.

    On a real reactor the port is a ``superd.net.datagramport.DatagramPort``,
    which reads a bounded number of datagrams per wake-up; other reactors
    (test fakes) get ``listenUDP`` or ``adoptDatagramPort``.
    """
    posix = isinstance(reactor, PosixReactorBase)
    if address.needs_own_socket or activation.inherits(address):
        sock = bind_socket(address)
        try:
            if posix:
                return adopt_datagram(reactor, sock.fileno(), sock.family, protocol,
                                      MAX_DATAGRAM)
            return reactor.adoptDatagramPort(  # type: ignore[no-any-return]
                sock.fileno(), sock.family, protocol, MAX_DATAGRAM)
        finally:
            sock.close()  # the port keeps its own dup
    try:
        if posix:
            return listen_datagram_port(reactor, address.port, protocol, address.host,
                                        MAX_DATAGRAM)
        return reactor.listenUDP(  # type: ignore[no-any-return]
            address.port, protocol, interface=address.host, maxPacketSize=MAX_DATAGRAM)
    except CannotListenError as e:
        raise _cannot_listen(address, e) from e


def open_with_fallback(open_port: Callable[[ListenAddress], _T],
                       address: ListenAddress) -> Tuple[ListenAddress, _T]:
    """
    ``open_port(address)``, retried on 0.0.0.0 when ``address`` is the IPv6
    wildcard of a service without ``bind`` and the kernel has no IPv6.
    Returns the address actually used and what ``open_port`` returned.
    """
    try:
        return address, open_port(address)
    except BindError as e:
        if not (address.ipv4_fallback and e.errno == errno.EAFNOSUPPORT):
            raise
    ipv4 = attrs.evolve(address, host="0.0.0.0", v6only=None, ipv4_fallback=False)
    _log.warn("no IPv6 here: service {service_id} listens on IPv4 only",
              event=events.EV_IPV4_FALLBACK, service_id=address.service_id)
    return ipv4, open_port(ipv4)


def emit_listening(address: ListenAddress, port: IListeningPort) -> int:
    """Log the structured ``listening`` event for a bound socket; return its
    port (0 for a UNIX socket)."""
    host: Any = port.getHost()
    bound = 0 if address.unix is not None else int(host.port)
    _log.info(
        "service {service_id} listening on {where}",
        event=EV_LISTENING, service_id=address.service_id, name=address.name,
        host=address.host, port=bound, protocol=address.protocol,
        where=address.describe(bound),
    )
    return bound


def emit_not_listening(address: ListenAddress, bound: Optional[int]) -> None:
    """Log the structured ``not_listening`` event: the socket of ``address``
    (bound to port ``bound``) is closed."""
    shown = address.port if bound is None else bound
    _log.info(
        "service {service_id} no longer listening on {where}",
        event=events.EV_NOT_LISTENING, service_id=address.service_id, name=address.name,
        host=address.host, port=shown, protocol=address.protocol,
        where=address.describe(shown),
    )

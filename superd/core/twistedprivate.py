"""
Every use superd makes of Twisted's private API (and of CPython's
``socket._accept``), in one place.

Twisted keeps no compatibility promise for names that start with an
underscore, nor for the undocumented behaviour of its transports and ports
that a few of superd's features stand on.  Each use below says what it
relies on and which public API would replace it; nothing else in superd
touches these names.  ``tests/core/test_twistedprivate.py`` pins every one
against the installed Twisted, so that an upgrade that breaks one fails
there, by name, and not in production.  ``setup.cfg`` pins Twisted to the
release series those tests passed with; ``make newest-twisted`` runs the unit
tests against the newest release and reports what broke.

The uses that need Twisted's TLS are in ``superd.core.twistedtls``, apart,
so that a daemon serving no TLS never imports OpenSSL.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

from twisted.internet import process, tcp, unix
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    ISystemHandle,
)
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

__all__ = [
    "ProxyHeaderError",
    "parse_proxy_header",
    "ACCEPT_ERRORS",
    "descriptor_acceptor",
    "adopt_listening_descriptor",
    "adopt_unix_listening_descriptor",
    "buffered_port_logs",
    "client_connection_creator",
    "client_transport",
    "endpoints_inherited_descriptors",
    "is_plain_tcp",
    "is_port_chatter",
    "listening_socket",
    "reap_handlers",
    "release_descriptor",
    "reserved_descriptor",
    "serve_port_with",
    "server_transport",
    "switch_protocol",
    "unix_port_lost",
    "unsent_bytes",
]


# -- accepting bare descriptors (superd.net.takingport) -------------------------
#
# TakingPort is tcp.Port with its own accept loop (tcp._accept yields socket
# objects; TakingPort wants the bare descriptor).  The loop reuses Twisted's
# pieces so that it behaves as tcp.Port does when descriptors run out.
# Public replacement: none.  A hook on tcp.Port that gets the accepted
# descriptor before Twisted wraps it would replace this whole section.

#: ``tcp._ACCEPT_ERRORS``: the errnos of ``accept()`` that tcp.Port logs and
#: survives (ending that wake-up) rather than raising.
ACCEPT_ERRORS: tuple[int, ...] = tuple(tcp._ACCEPT_ERRORS)


def reserved_descriptor() -> Any:
    """
    ``tcp._reservedFD``: the process-wide spare descriptor tcp.Port releases
    on EMFILE to accept-and-close the backlog; a context manager with
    ``available()``.
    """
    return tcp._reservedFD


def buffered_port_logs(port: tcp.Port) -> Any:
    """
    ``tcp._BuffersLogs`` over ``port._logger``: a context manager yielding a
    logger that holds events until exit, so that nothing opens a descriptor
    while the reserved one is released.
    """
    logger = port._logger
    return tcp._BuffersLogs(logger.namespace, logger.observer)


def descriptor_acceptor(listener: socket.socket) -> Callable[[], tuple[int, Any]]:
    """
    ``listener._accept`` (CPython), bound once for a whole accept loop: each
    call is ``accept4()`` returning the bare descriptor and the peer's
    address, without building a ``socket.socket`` (whose constructor asks
    the kernel for the local address again).  Public replacement: none in
    the standard library.
    """
    accept: Callable[[], tuple[int, Any]] = listener._accept  # type: ignore[attr-defined]
    return accept


def adopt_listening_descriptor(cls: type[Any], reactor: Any, fd: int,
                               family: socket.AddressFamily, target: Any, **options: Any) -> Any:
    """
    ``tcp.Port._fromListeningDescriptor`` / ``udp.Port._fromListeningDescriptor``:
    a port of class ``cls`` (a tcp.Port or udp.Port subclass) on an already
    bound socket, serving ``target`` (factory or datagram protocol).  Public
    replacement: ``reactor.adoptStreamPort`` / ``adoptDatagramPort``, which
    always build the plain classes (a port-class argument would do).
    """
    return cls._fromListeningDescriptor(reactor, fd, family, target, **options)


def adopt_unix_listening_descriptor(cls: type[Any], reactor: Any, fd: int, factory: Any,
                                    *, mode: int, backlog: int) -> Any:
    """
    ``unix.Port._fromListeningDescriptor``: a port of class ``cls`` (a
    unix.Port subclass) on an already bound and listening UNIX socket.  Its
    ``startListening`` chmods the socket file to ``mode`` and calls
    ``listen(backlog)`` again even on an adopted socket, so both are set to
    the socket's own (the defaults, 0666 and 50, would undo them); and
    ``_shouldShutdown`` is cleared, as tcp.Port clears it for a socket it
    adopts: ``shutdown()`` of a listening UNIX socket makes every later
    connection to it refused, through every copy (systemd's included).
    Public replacement: ``reactor.adoptStreamPort``, which builds the plain
    class with those defaults.
    """
    port = cls._fromListeningDescriptor(reactor, fd, factory)
    port.mode = mode
    port.backlog = backlog
    port._shouldShutdown = False
    return port


def unix_port_lost(port: unix.Port, reason: Failure) -> None:
    """
    What ``unix.Port.connectionLost`` does, except removing the socket
    file (unconditionally, even one systemd made or another process put
    there since): ``tcp.Port.connectionLost`` -- a port without ``wantPID``
    has no lock file to release.  Public replacement: none.
    """
    tcp.Port.connectionLost(port, reason)


def server_transport(port: tcp.Port, skt: socket.socket, protocol: Any,
                     address: Any) -> Any:
    """
    What ``tcp.Port.doRead`` builds for an accepted socket: ``port.transport``
    (tcp.Server) with the next session number.  Relies on tcp.Server's
    constructor signature, which is not documented.
    """
    number = port.sessionno
    port.sessionno = number + 1
    return port.transport(skt, protocol, address, port, number, port.reactor)


def client_transport(cls: type[tcp.Server], skt: socket.socket, protocol: Any,
                     address: tuple[Any, ...], reactor: Any) -> Any:
    """
    A transport of class ``cls`` (a tcp.Server subclass) for a socket superd
    connected itself (superd.net.tcpconnect), as ``tcp.Server._fromConnectedSocket``
    builds one for ``adoptStreamConnection``: no port (``server`` None), so
    its ``repstr`` is set here.  ``address`` is the peer's (host, port[,
    flowinfo, scope]).  Relies on tcp.Server's constructor signature and its
    starting to read.  Public replacement: ``adoptStreamConnection``, which
    duplicates the descriptor and builds the plain class.
    """
    transport = cls(skt, protocol, address, None, 0, reactor)  # type: ignore[arg-type]
    transport.repstr = f"<{type(protocol).__name__} to {address[0]}:{address[1]}>"
    return transport


# -- a reload serving a bound port with new settings (superd.net.listener) -----

def serve_port_with(port: IListeningPort, target: Any, *, stream: bool) -> None:
    """
    Make a listening ``port`` serve ``target`` from its next connection or
    datagram on: the factory of a ``tcp.Port``, the protocol of a
    ``udp.Port``.  Relies on ``tcp.Port.doRead`` reading ``self.factory`` on
    every accept and ``udp.Port.doRead`` reading ``self.protocol`` for every
    datagram, so that no connection or datagram finds the socket closed.
    Public replacement: none (``IListeningPort`` cannot change its factory).
    """
    if stream:
        port.factory = target  # type: ignore[attr-defined]
    else:
        port.protocol = target  # type: ignore[attr-defined]


def listening_socket(port: IListeningPort) -> Optional[socket.socket]:
    """
    The socket of a listening ``port`` (for socket options such as the
    kernel's filters), or None when it has none (closed, or a test fake).
    A ``udp.Port`` provides ``ISystemHandle``; a listening ``tcp.Port``
    does not, and its ``socket`` attribute is undocumented (removed once
    the port has stopped).  Public replacement: ``ISystemHandle`` on
    ``tcp.Port``.
    """
    if ISystemHandle.providedBy(port):
        handle = ISystemHandle(port).getHandle()
        return handle if isinstance(handle, socket.socket) else None
    if isinstance(port, tcp.Port):
        try:
            return port.socket  # type: ignore[no-any-return]
        except AttributeError:
            return None
    return None


# -- Twisted's own lines about ports and factories (superd.observe.logs) -----------
#
# Every listening port logs "<Factory> starting on <port>" when it opens and
# "(TCP Port <port> Closed)" when it closes, with ``twisted.python.log.msg``
# (no structured fields, no address: the IPv4 and IPv6 sockets of one port
# print the same line); a noisy factory or datagram protocol adds "Starting
# factory" / "Starting protocol".  superd logs ``listening`` and
# ``not_listening`` with the service and address instead, so its observers
# drop these by their text.  Public replacement: none (the texts are inline
# in ``tcp.Port.startListening``, ``udp.Port.connectionLost``...; a port
# subclass could not silence them without copying those methods).

_PORT_LINE = re.compile(
    r"\A(?:.+ starting on (?:\d+|b?'.*'|b?\".*\")"
    r"|\((?:[A-Z]+ )?Port .* Closed\)"
    r"|(?:Starting|Stopping) protocol .*)\Z", re.DOTALL)
_FACTORY_FORMATS = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})


def is_port_chatter(event: Mapping[str, Any]) -> bool:
    """
    True for Twisted's lines about a port opening or closing and a factory
    or datagram protocol starting or stopping: legacy ``log.msg`` events
    (namespace ``log_legacy``) with those texts, and the ``Starting factory``
    events of ``protocol.Factory.doStart``.
    """
    if event.get("log_namespace") == "log_legacy":
        text = event.get("log_text")
        return isinstance(text, str) and _PORT_LINE.match(text) is not None
    text = event.get("log_format")
    return isinstance(text, str) and text in _FACTORY_FORMATS


# -- handing an accepted connection to a child (superd.handlers.spawn.handoff) --

def is_plain_tcp(transport: Any) -> bool:
    """
    True when ``transport`` is a ``tcp.Server`` that has not started TLS
    (``startTLS`` sets its undocumented ``TLS`` flag): its descriptor is the
    client's byte stream.  Public replacement: none.
    """
    return isinstance(transport, tcp.Server) and not transport.TLS


def unsent_bytes(server: tcp.Server) -> bytes:
    """
    Bytes written to ``server`` that Twisted has not sent yet: the unsent
    part of ``dataBuffer`` (from ``offset``) and the ``_tempDataBuffer``
    list, ``abstract.FileDescriptor``'s two write buffers.  Public
    replacement: none (a transport cannot be asked for its pending output).
    """
    chunks = [bytes(server.dataBuffer[server.offset:])]
    chunks.extend(bytes(c) for c in server._tempDataBuffer)
    return b"".join(chunks)


def release_descriptor(server: tcp.Server, reason: Failure) -> None:
    """
    Make Twisted forget ``server`` and close its descriptor with a plain
    ``close()``: ``_shouldShutdown = False`` stops ``tcp._SocketCloser``
    from calling ``shutdown()``, which would end the connection for the
    child that shares the socket; ``connectionLost`` then closes superd's
    copy and tells the protocol.  Public replacement: none
    (``loseConnection`` shuts the socket down, ``abortConnection`` resets it).
    """
    server._shouldShutdown = False
    server.connectionLost(reason)


# -- giving a live connection to another protocol (access.gate, handlers.tcpmux)

def switch_protocol(transport: Any, protocol: Any) -> None:
    """
    Make ``transport`` deliver its next events to ``protocol``: the
    ``wrappedProtocol`` of a ``ProtocolWrapper`` (documented), else the
    ``protocol`` attribute of a ``tcp.Server``, which ``tcp.Connection``
    reads on every event (undocumented).  Public replacement: none; a
    forwarding protocol would cost one more call per event.
    """
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol


# -- PROXY protocol headers (superd.net.proxywire) ---------------------------------
#
# ``V1Parser.parse`` and ``V2Parser.parse`` read one complete PROXY protocol
# header into Twisted addresses; ``InvalidProxyHeader`` (and its subclasses)
# is what they raise.  They live in private modules: the package's public
# API is ``proxyEndpoint`` alone, a wrapping factory that reads the header
# from bytes already received, which cannot leave the bytes after the header
# in the socket for a server the connection is handed to.  Public
# replacement: none.  V1Parser.parse rejects the bare ``PROXY UNKNOWN``
# line the specification allows; superd.net.proxywire handles it first.


class ProxyHeaderError(ValueError):
    """A header Twisted's parser refused; ``kind`` names its exception."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def parse_proxy_header(header: bytes, version: int) -> Any:
    """
    ``V1Parser.parse(header)`` (a line without its CRLF) or
    ``V2Parser.parse(header)``: a ``_info.ProxyInfo`` with ``source`` and
    ``destination`` addresses.  Raises ``ProxyHeaderError`` for what they
    raise as ``InvalidProxyHeader``.
    """
    # Imported at the first header: the haproxy package imports
    # twisted.internet.endpoints, and with it OpenSSL and systemd's
    # LISTEN_FDS, which a daemon without PROXY services must not pay for.
    from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
    from twisted.protocols.haproxy._v1parser import V1Parser
    from twisted.protocols.haproxy._v2parser import V2Parser

    try:
        return (V1Parser if version == 1 else V2Parser).parse(header)
    except InvalidProxyHeader as e:
        raise ProxyHeaderError(type(e).__name__) from e


# -- reaping children (superd.proc.reaping) ---------------------------------------

def reap_handlers() -> dict[int, Any]:
    """
    ``twisted.internet.process.reapProcessHandlers``, the table Twisted's
    SIGCHLD handler (``reapAllProcesses``) walks, calling ``reapProcess()``
    of every value.  ``ExitReaping`` puts one entry there under a negative
    key (no pid), so that it hears every SIGCHLD without a registration per
    child.  Public replacement: none (``registerReapProcessHandler`` wants a
    pid and calls ``waitpid`` on it).
    """
    return process.reapProcessHandlers


# -- socket activation (superd.net.activation) ------------------------------------

def endpoints_inherited_descriptors() -> tuple[Sequence[int], Sequence[str]]:
    """
    The systemd sockets that ``twisted.internet.endpoints`` took from
    ``LISTEN_FDS`` when it was imported (none if it was not): their
    descriptors and their names (empty when ``LISTEN_FDNAMES`` was not
    set).  Reads ``endpoints._SystemdParser._sddaemon``, a ``ListenFDs``, and
    its ``_names``.  Public replacement: none (the ``systemd:`` endpoint
    parser keeps its ``ListenFDs`` to itself).
    """
    endpoints = sys.modules.get("twisted.internet.endpoints")
    parser = getattr(endpoints, "_SystemdParser", None)
    daemon = getattr(parser, "_sddaemon", None)
    if daemon is None:
        return (), ()
    return list(daemon.inheritedDescriptors()), list(getattr(daemon, "_names", ()))


# -- TLS to a redirect upstream (superd.config.tlscontext) --------------------------

def client_connection_creator(options: Any, hostname: str) -> IOpenSSLClientConnectionCreator:
    """
    What ``ssl.optionsForClientTLS(hostname, ...)`` returns, for ``options``
    (a ``CertificateOptions``) that superd built itself: connections come from
    ``options.getContext()``, so a cipher list set on that context (with an
    ``@SECLEVEL``) applies, and the peer's certificate must name
    ``hostname``.  Relies on ``_sslverify.ClientTLSOptions(createConnection,
    hostname)`` and ``CertificateOptions._makeTLSConnection``.  Public
    replacement: none (``optionsForClientTLS`` builds its own options).
    """
    from twisted.internet._sslverify import ClientTLSOptions

    creator: IOpenSSLClientConnectionCreator = ClientTLSOptions(
        options._makeTLSConnection, hostname)
    return creator

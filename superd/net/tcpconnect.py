"""
An outbound TCP connection to an IP address, on superd's own transport
(``superd.net.connection.Connection``): the redirect relay's upstream.

``reactor.connectTCP`` builds a connector and a client transport that first
"resolves" the address (an IP literal here), waits a reactor turn before it
calls connect(), calls connect() again once the socket is writable to learn
the outcome, and then writes and closes a reactor turn late (Twisted's
``FileDescriptor``).  Per relayed connection that is more CPU than the relay
itself.  Here: one non-blocking connect(), the socket watched for
writability, ``SO_ERROR`` read once, and the connected socket served by
``Connection``.

The factory hears what ``connectTCP`` would tell it: ``buildProtocol`` with
the peer's address, then ``makeConnection``; or ``clientConnectionFailed``
with Twisted's own exceptions (``error.getConnectError`` of the errno,
``error.TimeoutError`` after ``timeout`` seconds, ``error.UserError`` when
``stopConnecting`` gives up).  ``Connection`` is a ``tcp.Server``, so this
needs one of Twisted's posix reactors: ``connect_tcp`` uses ``connectTCP``
on any other (test fakes).

A protocol whose class says ``serves_bare`` (the relay's upstream side) is
served on the bare descriptor instead (``BareClientConnection``, the
outbound ``superd.net.bare.BareConnection``), moving onto ``Connection``
as an accepted bare connection moves onto the port's transport.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any, Optional, Protocol, cast

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IConnector, IDelayedCall, IWriteDescriptor
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.core.twistedprivate import client_transport
from superd.net.bare import BareConnection
from superd.net.connection import Connection

__all__ = ["Attempt", "BareClientConnection", "TCPAttempt", "connect_tcp"]

#: connect() results that mean "under way": wait for the socket to be writable.
_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EINTR})


class Attempt(Protocol):
    """What a caller keeps of a connection attempt: a way to give it up."""

    def stopConnecting(self) -> None:
        """Give up (the factory hears ``clientConnectionFailed``)."""
        ...


def connect_tcp(reactor: Any, host: str, port: int, factory: ClientFactory,
                timeout: float) -> Attempt:
    """Connect ``factory`` to ``host`` (an IP address) and ``port``."""
    if not isinstance(reactor, PosixReactorBase):
        attempt: Attempt = reactor.connectTCP(host, port, factory, timeout=timeout)
        return attempt
    tcp_attempt = TCPAttempt(reactor, host, port, factory, timeout)
    tcp_attempt.start()
    return tcp_attempt


@implementer(IWriteDescriptor)
class TCPAttempt:
    """One non-blocking connect(), watched by the reactor until it ends."""

    def __init__(self, reactor: Any, host: str, port: int, factory: ClientFactory,
                 timeout: float) -> None:
        self._reactor = reactor
        self._factory = factory
        self._timeout = timeout
        six = ":" in host
        self._family = socket.AF_INET6 if six else socket.AF_INET
        self._address: tuple[Any, ...] = (host, port, 0, 0) if six else (host, port)
        self._peer = (IPv6Address if six else IPv4Address)("TCP", host, port)
        self._socket: Optional[socket.socket] = socket.socket(
            self._family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self._watching = False
        self._timer: Optional[IDelayedCall] = None

    def start(self) -> None:
        """Call connect(); the outcome may be known at once."""
        assert self._socket is not None
        code = self._socket.connect_ex(self._address)
        if code in _IN_PROGRESS:
            # To a local upstream the handshake is often over before connect()
            # returns: asking again costs one system call, where watching for
            # writability costs a timer, two epoll changes and a reactor turn.
            code = self._socket.connect_ex(self._address)
            if code == errno.EISCONN:
                code = 0
        if code == 0:
            self._connected()
        elif code in _IN_PROGRESS or code == errno.EALREADY:
            self._watching = True
            self._reactor.addWriter(self)
            self._timer = self._reactor.callLater(self._timeout, self._timed_out)
        else:
            self._failed(error.getConnectError((code, os.strerror(code))))

    # -- IWriteDescriptor ----------------------------------------------------

    def fileno(self) -> int:
        return -1 if self._socket is None else self._socket.fileno()

    def logPrefix(self) -> str:
        return "TCPAttempt"

    def doWrite(self) -> None:
        """Writable: connect() has finished, one way or the other."""
        self._stop_watching()
        code = self._pending_error()
        if code:
            self._failed(error.getConnectError((code, os.strerror(code))))
        else:
            self._connected()

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped the socket (an error or hang-up event, or its shutdown)."""
        self._watching = False  # the reactor removed it already
        self._stop_watching()
        code = self._pending_error()
        self._failed(error.getConnectError((code, os.strerror(code))) if code
                     else reason.value or error.ConnectionLost())

    # -- giving up -----------------------------------------------------------

    def stopConnecting(self) -> None:
        """Give up the attempt (nothing happens once it has ended)."""
        if self._socket is not None:
            self._stop_watching()
            self._failed(error.UserError())

    def _timed_out(self) -> None:
        self._timer = None
        self._stop_watching()
        self._failed(error.TimeoutError())

    # -- the end -------------------------------------------------------------

    def _pending_error(self) -> int:
        if self._socket is None:
            return 0
        try:
            return self._socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as e:
            return e.errno or errno.EBADF

    def _stop_watching(self) -> None:
        if self._watching:
            self._watching = False
            self._reactor.removeWriter(self)
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _failed(self, reason: BaseException) -> None:
        skt, self._socket = self._socket, None
        if skt is None:
            return
        skt.close()
        # The factory gets the attempt where connectTCP gives its IConnector
        # (the relay's ignores it; it only tells attempts apart).
        self._factory.clientConnectionFailed(cast(IConnector, self), Failure(reason))

    def _connected(self) -> None:
        skt, self._socket = self._socket, None
        assert skt is not None
        protocol = self._factory.buildProtocol(self._peer)
        if protocol is None:
            skt.close()
            return
        transport: Any
        if getattr(type(protocol), "serves_bare", False):
            transport = BareClientConnection(self._reactor, skt, self._address, protocol)
        else:
            transport = client_transport(Connection, skt, protocol, self._address, self._reactor)
        protocol.makeConnection(transport)


class BareClientConnection(BareConnection):
    """A connection superd made, on its bare descriptor (see ``BareConnection``)."""

    #: A relay's upstream typically answers and closes (see ``BareConnection.reads_on``).
    reads_on = True

    def __init__(self, reactor: Any, skt: socket.socket, address: tuple[Any, ...],
                 protocol: Any) -> None:
        # Connected non-blocking: nothing to set up but the reactor's watch.
        # The socket object is kept for what os cannot do (TCP options,
        # half-close) and for the ordinary transport if the connection moves.
        self._skt = skt
        self._family = socket.AF_INET6 if len(address) == 4 else socket.AF_INET
        self._reactor = reactor
        self._address = address
        self._fd = skt.fileno()
        self.protocol = protocol
        self.connected = True
        self._moved = None
        reactor.addReader(self)

    def _ordinary(self) -> Any:
        skt, self._skt = self._skt, None  # the ordinary transport's now
        assert isinstance(skt, socket.socket)
        return client_transport(Connection, skt, self.protocol, self._address, self._reactor)

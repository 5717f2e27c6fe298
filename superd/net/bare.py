"""
The transport of a short-lived connection served on its bare descriptor:
no ``socket.socket`` object (until a TCP option or a half-close needs one),
no ``tcp.Server``.

A ``TakingPort`` gives it to a protocol that says it can start on one
(``serves_bare``), such as echo or a relay: most of such a connection's life
is a read or two, a write and the close, and Twisted's transport costs more
Python per connection than those system calls.  Here the descriptor itself
is registered with the reactor, read with ``os.read``, written with
``os.write`` and closed with ``os.close``; a half-close-aware protocol may
half-close it (``shutdown``), and it stops reading at the peer's EOF, as
Twisted's transports do.  ``superd.net.tcpconnect`` serves an outbound
connection the same way.

Only the common case is served this way.  The first write the kernel does
not take whole moves the connection onto superd's ordinary transport
(``superd.net.connection.Connection``, built as ``tcp.Port`` would have
built it) with the rest buffered there: from then on buffering, producers
and flow control are Twisted's, and this object only forwards to it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from typing import Any

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.main import CONNECTION_LOST
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.core import twistedprivate

__all__ = ["BareConnection", "ordinary_transport", "peer_address"]

#: Bytes read per wake-up, as Twisted's transports read.
READ_SIZE = 65536
#: What ``_read`` returns after a read shorter than ``READ_SIZE``.
_SHORT = object()
#: SO_LINGER on, zero seconds: close() then resets the connection (an abort).
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def peer_address(address: Any) -> Any:
    """
    The peer's address tuple as ``tcp.Port`` gives it to a transport: an
    IPv6 address keeps its scope id in the host string.
    """
    if len(address) == 4:
        host = socket.getnameinfo(address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        return (host[0], *address[1:])
    return address


def ordinary_transport(port: Any, fd: int, protocol: Protocol, address: Any) -> Any:
    """
    The transport ``port`` (a ``tcp.Port``) would build for the accepted
    descriptor ``fd`` from ``address``: the protocol's ``makeConnection``
    is the caller's.  The socket is given its family, type and protocol, as
    ``socket.accept()`` gives them: else its constructor asks the kernel (a
    getsockopt per connection).
    """
    skt = socket.socket(port.addressFamily, port.socketType, port.socket.proto, fileno=fd)
    return twistedprivate.server_transport(port, skt, protocol, peer_address(address))


def _tcp_address(address: Any) -> IPv4Address | IPv6Address:
    """Twisted's address of the TCP endpoint at the address tuple ``address``."""
    if len(address) == 4:
        return IPv6Address("TCP", *address)
    return IPv4Address("TCP", *address)


@implementer(IReadDescriptor)
class BareConnection:
    """A server-side TCP connection on its bare, non-blocking descriptor."""

    #: Twisted's name for this flag: a protocol may look at it.
    disconnecting = False
    TLS = False

    #: The write side was shut down (a half-close).
    _write_closed = False
    #: The peer's EOF was read: reading is over.
    _read_over = False
    #: Reading stopped by ``pauseProducing``.
    _paused = False
    #: The socket object of ``_on_socket``, once one was needed.
    _skt: socket.SocketType | None = None

    def __init__(self, port: Any, fd: int, address: Any, protocol: Protocol) -> None:
        # Non-blocking in one system call: an accepted socket has no other
        # file status flag to keep.
        fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)
        self._port = port
        self._family = port.addressFamily
        self._reactor = port.reactor
        self._fd = fd
        self._address = address
        self.protocol = protocol
        self.connected = True
        #: The ordinary transport the connection moved onto, if it did.
        self._moved: Any = None
        self._reactor.addReader(self)

    # -- the reactor's side (IReadDescriptor) --------------------------------

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return type(self.protocol).__name__

    #: After a read shorter than ``READ_SIZE``, read once more in the same
    #: reactor turn (``superd.net.tcpconnect.BareClientConnection``): a peer
    #: that answers and closes has usually sent its FIN with the answer, and
    #: finding it now spares a reactor event, where finding nothing costs one
    #: read() that fails with EAGAIN.
    reads_on = False

    def doRead(self) -> Any:
        why = self._read()
        if why is _SHORT:
            if (self.reads_on and self._moved is None and self.connected
                    and not (self._paused or self._read_over or self.disconnecting)):
                why = self._read()
            return None if why is _SHORT else why
        return why

    def _read(self) -> Any:
        try:
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return CONNECTION_LOST  # the reactor calls connectionLost
        if not data:
            self._read_lost()
            return None
        self.protocol.dataReceived(data)
        return _SHORT if len(data) < READ_SIZE else None

    def _read_lost(self) -> None:
        """The peer closed its side: a half-close-aware protocol decides what next."""
        read_lost = getattr(self.protocol, "readConnectionLost", None)
        if read_lost is None:
            self._close(connectionDone)
        else:
            # As Twisted does: no more reading (the descriptor stays readable).
            self._read_over = True
            self._reactor.removeReader(self)
            read_lost()

    def connectionLost(self, reason: Failure) -> None:
        """The reactor's word (an error, its shutdown): close and tell the protocol."""
        if self.connected:
            self._close(reason)

    # -- the protocol's side --------------------------------------------------

    def write(self, data: bytes) -> None:
        moved = self._moved
        if moved is not None:
            moved.write(data)
            return
        if self.disconnecting or self._write_closed or not data:
            return
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Reset: the descriptor is readable now, and the next read meets
            # the error and loses the connection.  Not read (past the peer's
            # EOF, or paused), it is lost on the next turn, as Twisted's
            # doWrite would lose it: else a relay would go on feeding it.
            if self._read_over or self._paused:
                self.disconnecting = True
                self._reactor.callLater(0, self._lost_writing)
            return
        if sent < len(data):
            self._move(data[sent:])

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def buffered(self) -> bool:
        """True while written bytes wait for the kernel (only once moved)."""
        return self._moved is not None and bool(self._moved.buffered())

    def close_if_flushed(self) -> bool:
        """Close now (True): nothing is ever left unsent here; moved, the ordinary
        transport's answer."""
        if self._moved is not None:
            return bool(self._moved.close_if_flushed())
        if not self.disconnecting:  # else closed, or an abort is under way
            self._close(connectionDone)
        return True

    def loseConnection(self) -> None:
        if self._moved is not None:
            self._moved.loseConnection()
        elif not self.disconnecting:
            self._close(connectionDone)

    def close_writing_if_flushed(self) -> bool:
        """Half-close now (True): FIN, then the protocol's ``writeConnectionLost``;
        moved, the ordinary transport's answer."""
        if self._moved is not None:
            return bool(self._moved.close_writing_if_flushed())
        if not (self.disconnecting or self._write_closed):
            self._write_closed = True
            try:
                self._on_socket("shutdown", socket.SHUT_WR)
            except OSError:
                pass  # reset: the next read meets the error
            write_lost = getattr(self.protocol, "writeConnectionLost", None)
            if write_lost is not None:
                write_lost()
        return True

    def loseWriteConnection(self) -> None:
        if self._moved is not None:
            self._moved.loseWriteConnection()
        else:
            self.close_writing_if_flushed()

    def setTcpNoDelay(self, enabled: bool) -> None:
        if self._moved is not None:
            self._moved.setTcpNoDelay(enabled)
        else:
            self._on_socket("setsockopt", socket.IPPROTO_TCP, socket.TCP_NODELAY, enabled)

    def setTcpKeepAlive(self, enabled: bool) -> None:
        if self._moved is not None:
            self._moved.setTcpKeepAlive(enabled)
        else:
            self._on_socket("setsockopt", socket.SOL_SOCKET, socket.SO_KEEPALIVE, enabled)

    def _on_socket(self, method: str, *args: Any) -> Any:
        """Call a ``socket`` method that ``os`` lacks on the descriptor, through
        one socket object kept until the connection closes or moves (each
        new one asks the kernel for the socket's name).  ``socket.SocketType``
        is the C type under ``socket.socket``: no Python-level constructor."""
        skt = self._skt
        if skt is None:
            skt = self._skt = socket.SocketType(self._family, socket.SOCK_STREAM, 0, self._fd)
        return getattr(skt, method)(*args)

    def _release_socket(self) -> None:
        """Let go of the socket object without closing the descriptor."""
        skt, self._skt = self._skt, None
        if skt is not None:
            skt.detach()

    def abortConnection(self) -> None:
        """Reset the connection; the protocol hears of it on the next turn, as
        from Twisted's ``abortConnection``."""
        if self._moved is not None:
            self._moved.abortConnection()
            return
        if self.disconnecting:
            return
        self.disconnecting = True
        self._reactor.removeReader(self)
        self._reactor.callLater(0, self._reset)

    def _reset(self) -> None:
        if not self.connected:  # the reactor closed it meanwhile
            return
        try:
            self._on_socket("setsockopt", socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        except OSError:
            pass
        self._close(Failure(error.ConnectionAborted()))

    def _lost_writing(self) -> None:
        if self.connected:  # else the reactor closed it meanwhile
            self._close(Failure(error.ConnectionLost()))

    def _close(self, reason: Failure) -> None:
        self.connected = False
        self.disconnecting = True
        if not (self._read_over or self._paused):
            self._reactor.removeReader(self)
        self._release_socket()
        os.close(self._fd)
        self._fd = -1
        self.protocol.connectionLost(reason)

    def _move(self, unsent: bytes) -> None:
        """Serve the connection on the ordinary transport from now on, ``unsent``
        buffered there first."""
        self._reactor.removeReader(self)  # the new transport registers the descriptor
        moved = self._ordinary()
        self._moved = moved
        self.protocol.transport = moved
        if self._paused or self._read_over:
            moved.stopReading()  # it starts reading; this did not
        if unsent:
            moved.write(unsent)

    def _ordinary(self) -> Any:
        """The ordinary transport for this descriptor (see ``ordinary_transport``)."""
        self._release_socket()
        return ordinary_transport(self._port, self._fd, self.protocol, self._address)

    def pauseProducing(self) -> None:
        if self._moved is not None:
            self._moved.pauseProducing()
        elif not self.disconnecting:
            self._paused = True
            self._reactor.removeReader(self)

    def resumeProducing(self) -> None:
        if self._moved is not None:
            self._moved.resumeProducing()
        elif not self.disconnecting:
            self._paused = False
            if not self._read_over:
                self._reactor.addReader(self)

    def stopProducing(self) -> None:
        """A consumer this fed is gone: close, as Twisted's transports do."""
        self.loseConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self._moved is None:
            # A producer needs Twisted's buffer: move to the ordinary transport.
            self._move(b"")
        self._moved.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self._moved is not None:
            self._moved.unregisterProducer()

    def getPeer(self) -> IPv4Address | IPv6Address:
        return _tcp_address(peer_address(self._address))

    def getHost(self) -> IPv4Address | IPv6Address:
        return _tcp_address(peer_address(self._on_socket("getsockname")))

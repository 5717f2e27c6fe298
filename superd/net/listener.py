"""
What every listening thing of the daemon is, and the common one.

``IListener`` is one listening socket of one service as a child service of
the daemon: bound in ``privilegedStartService`` (before twistd could drop
privileges), closed in ``stopService``.  The daemon reads its address and
state for ``superd status``, closes it when startup fails, hands its socket
to a successor on reload and gives its socket to the kernel's filters
(``superd.access.kerneldrop``) through this interface alone.

``Listener`` implements it for services served by a factory (stream) or a
datagram protocol; ``superd.net.shared.SharedListener`` for TLS services,
whose sockets several services may share; ``superd.handlers.spawn.wait.
WaitService`` for ``wait = yes`` servers, which get the socket itself.
``Listeners`` is the daemon's collection of them.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Iterator
from typing import Any, Callable, Optional

import attrs
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from zope.interface import Attribute, implementer

from superd.config.model import SocketType
from superd.core import twistedprivate
from superd.net.address import ListenAddress
from superd.net.sockets import emit_listening, emit_not_listening, open_with_fallback

__all__ = ["IListener", "ListenState", "ListenStatus", "Listener", "ListenerService",
           "Listeners"]


class ListenState(enum.Enum):
    """What a listening socket is doing, as ``superd status`` words it."""

    CLOSED = "closed"
    LISTENING = "listening"
    #: A ``wait = yes`` server runs on the socket; superd does not poll it.
    SUSPENDED = "suspended"
    #: A ``wait = yes`` server exited at once without serving; the next
    #: starts after a back-off.
    BACKING_OFF = "backing off"


@attrs.frozen
class ListenStatus:
    """A listener's state, with the running server or the end of its back-off."""

    state: ListenState
    #: SUSPENDED: the pid of the server running on the socket.
    server_pid: Optional[int] = None
    #: BACKING_OFF: when the back-off ends (reactor time).
    until: Optional[float] = None


class IListener(IService):
    """One listening socket of one service, as a service of the daemon's tree."""

    address = Attribute(
        "The ListenAddress listened on: after an IPv6-to-IPv4 fallback, the one"
        " actually bound.")

    def bound_port() -> Optional[int]:
        """The port number the socket is bound to (the kernel's choice for
        port 0), or None while it is closed."""

    def status() -> ListenStatus:
        """What the socket is doing now."""

    def listening_socket() -> Optional[socket.socket]:
        """The bound socket, for socket options (the kernel's filters), or
        None while closed or when the port has none (test fakes)."""

    def adopt(predecessor: IListener) -> None:
        """
        Take over the bound socket of ``predecessor``, the listener this one
        replaces on reload (same service identity, so the same kind), and
        serve it with this listener's settings from now on: no connection or
        datagram finds the socket closed meanwhile.  ``predecessor`` is left
        closed without closing the socket.  Raises ``TypeError`` for a
        listener of another kind.
        """

    def release() -> tuple[Optional[IListeningPort], Any]:
        """
        Give the bound socket up to a listener of another kind that takes
        this one's place (a service giving up TLS leaves its shared port for
        a plain one): the port and what served it, or ``(None, None)``.
        Left closed without closing the socket.  Raises ``TypeError`` where
        no other kind can take it.
        """

    def close() -> Optional[Deferred[Any]]:
        """Stop listening and close the socket now (a failed startup; stopService)."""


class ListenerService(Service):
    """
    The life every listener of the daemon shares: it listens at privileged
    start (or at start, for runners that skip it) and closes at stop.
    """

    def _listen(self) -> None:
        """Open (or join) the socket, unless already done."""
        raise NotImplementedError

    def close(self) -> Optional[Deferred[Any]]:
        """Stop listening now."""
        raise NotImplementedError

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        self._listen()  # runners that skip privilegedStartService (twist)

    def stopService(self) -> Optional[Deferred[Any]]:
        super().stopService()
        return self.close()


@implementer(IListener)
class Listener(ListenerService):
    """Listens on one address for one service; the port opens at privileged start."""

    def __init__(self, address: ListenAddress,
                 open_port: Callable[[ListenAddress], IListeningPort],
                 target: Any = None) -> None:
        self.address = address
        self._open_port = open_port
        #: The factory (stream) or protocol (dgram) serving the port.
        self.target = target
        self.port: Optional[IListeningPort] = None
        self._bound_port: Optional[int] = None

    def _listen(self) -> None:
        if self.port is None:
            self.address, port = open_with_fallback(self._open_port, self.address)
            self.port = port
            self._bound_port = emit_listening(self.address, port)

    # -- IListener ------------------------------------------------------------

    def bound_port(self) -> Optional[int]:
        return None if self.port is None else self._bound_port

    def status(self) -> ListenStatus:
        return ListenStatus(ListenState.CLOSED if self.port is None else ListenState.LISTENING)

    def listening_socket(self) -> Optional[socket.socket]:
        return None if self.port is None else twistedprivate.listening_socket(self.port)

    def adopt(self, predecessor: IListener) -> None:
        fresh = self.address
        address, bound = predecessor.address, predecessor.bound_port()
        port, previous = predecessor.release()
        self.port, self.address, self._bound_port = port, address, bound
        if port is None:
            return
        if fresh.unix is not None:
            from superd.net.unixsocket import reapply_permissions

            self.address = fresh
            reapply_permissions(fresh)
        stream = self.address.socket_type is SocketType.STREAM
        twistedprivate.serve_port_with(port, self.target, stream=stream)
        if stream:
            self.target.doStart()
        else:
            self.target.makeConnection(port)
        if previous is not None and previous.numPorts > 0:
            previous.doStop()

    def release(self) -> tuple[Optional[IListeningPort], Any]:
        """
        Give the bound socket up to the listener of another kind that takes
        this one's place: the port and what serves it.  Left closed without
        closing the socket.
        """
        port, self.port = self.port, None
        return port, self.target

    def close(self) -> Optional[Deferred[Any]]:
        port, self.port = self.port, None
        if port is None:
            return None
        emit_not_listening(self.address, self._bound_port)
        stop: Callable[[], Any] = port.stopListening
        stopped = maybeDeferred(stop)
        if self.address.unix is not None:
            from superd.net.unixsocket import release

            # Now, not when the port has closed: after a failed start the
            # reactor may never turn again.
            release(self.address.host)
        return stopped


class Listeners(MultiService):
    """
    The daemon's listeners, one child per socket; a reload adds and removes
    them.  ``sockets`` is what the kernel's filters are attached to.
    """

    name = "listeners"

    def listeners(self) -> Iterator[IListener]:
        """Every child, as an ``IListener``."""
        for child in self:
            yield IListener(child)

    def sockets(self) -> list[socket.socket]:
        """The bound sockets of every listener (IPv4 and IPv6 ones), each once
        (TLS services may share one)."""
        found: dict[int, socket.socket] = {}
        for listener in self.listeners():
            sock = listener.listening_socket()
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                found.setdefault(sock.fileno(), sock)
        return list(found.values())

"""
Listening sockets that several services share: the TLS services of one
address and port, chosen by the server name a client asks for (``tls_sni``).

A ``SharedListener`` is one service's listener on one address, an
``IListener`` like ``superd.net.listener.Listener``, except that the socket
belongs to the address: the first listener to start on it binds it, the
others join, the last to stop closes it (``SharedPorts`` keeps the
sockets).  What serves the socket depends on who shares it: a single member
that routes no names -- an ordinary TLS service -- is served by its own
factory, exactly as a ``Listener`` would serve it; otherwise a router made
by ``make_router`` (``superd.handlers.tls.sni``) reads each client's server
name and hands the connection to the member it names.

A reload adds the listeners of new services before it removes those of
dropped ones, and a changed service's new listener takes its predecessor's
place (``adopt``), so a shared socket stays open as long as any service of
the new configuration uses it.  Each member is told when it starts and stops
serving a socket (its certificate files are watched meanwhile).
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from zope.interface import implementer

from superd.core import twistedprivate
from superd.net.address import ListenAddress
from superd.net.listener import (
    IListener,
    Listener,
    ListenerService,
    ListenState,
    ListenStatus,
)
from superd.net.sockets import emit_listening, open_with_fallback

__all__ = ["Member", "Router", "SharedListener", "SharedPort", "SharedPorts"]

#: ``open_port(address, factory)``: bind ``address`` and serve it with ``factory``.
OpenPort = Callable[[ListenAddress, Any], IListeningPort]


class Member(Protocol):
    """What one service sharing a socket brings to it."""

    @property
    def names(self) -> Tuple[str, ...]:
        """The server names routed to it; () for the port's default."""

    @property
    def factory(self) -> Any:
        """Its access-controlled factory."""

    @property
    def hello_timeout(self) -> float:
        """Seconds its clients have to send their first bytes."""

    def start(self) -> None:
        """It serves one more socket."""

    def stop(self) -> None:
        """It serves one socket fewer."""


class Router(Protocol):
    """The factory of a socket whose members route names."""

    def route(self, members: Sequence[Member]) -> None:
        """Serve these members from now on (later ones win a name)."""

    def doStart(self) -> None:
        """A port serves it from now on."""

    def doStop(self) -> None:
        """A port no longer serves it."""


class SharedPort:
    """One bound socket and the listeners sharing it."""

    def __init__(self, address: ListenAddress, make_router: Callable[[], Router]) -> None:
        self.address = address
        self.port: Optional[IListeningPort] = None
        self.bound_port: Optional[int] = None
        self.listeners: List[SharedListener] = []
        self._make_router = make_router
        self._router: Optional[Router] = None
        self._served: Any = None

    def target(self) -> Any:
        """What should serve the socket for its members as they are now."""
        members = [listener.member for listener in self.listeners]
        if len(members) == 1 and not members[0].names:
            return members[0].factory
        if self._router is None:
            self._router = self._make_router()
        self._router.route(members)
        return self._router

    def open(self, open_port: OpenPort) -> None:
        """Bind the socket (raises ``BindError``), served as ``target`` says."""
        target = self.target()
        self.address, self.port = open_with_fallback(
            lambda address: open_port(address, target), self.address)
        self._served = target  # the port started it

    def take(self, port: IListeningPort, address: ListenAddress, bound: Optional[int],
             previous: Any) -> None:
        """Serve ``port``, bound by another listener that served it with ``previous``."""
        self.port, self.address, self.bound_port = port, address, bound
        self._served = previous
        self.serve()

    def serve(self) -> None:
        """Serve the socket with ``target()`` from the next connection on."""
        target = self.target()
        if target is self._served or self.port is None:
            return
        twistedprivate.serve_port_with(self.port, target, stream=True)
        target.doStart()
        previous, self._served = self._served, target
        if previous is not None and previous.numPorts > 0:
            previous.doStop()

    def release(self) -> Tuple[Optional[IListeningPort], Any]:
        """Give up the socket (to a ``Listener``): it and what serves it now."""
        port, self.port = self.port, None
        return port, self._served


class SharedPorts:
    """The daemon's shared sockets, one per address (and port)."""

    def __init__(self, make_router: Callable[[], Router]) -> None:
        self._make_router = make_router
        self._ports: Dict[Tuple[str, int, str], SharedPort] = {}

    @staticmethod
    def _key(address: ListenAddress) -> Optional[Tuple[str, int, str]]:
        # Port 0 is a new port for every socket: never shared.
        return (address.host, address.port, address.protocol) if address.port else None

    def join(self, listener: SharedListener, open_port: OpenPort) -> SharedPort:
        """Add ``listener`` to its address's socket, binding it if none is open."""
        key = self._key(listener.address)
        shared = self._ports.get(key) if key is not None else None
        if shared is None:
            shared = SharedPort(listener.address, self._make_router)
            shared.listeners.append(listener)
            try:
                shared.open(open_port)
            except BaseException:
                shared.listeners.remove(listener)
                raise
            if key is not None:
                self._ports[key] = shared
        else:
            shared.listeners.append(listener)
            shared.serve()
        listener.member.start()
        return shared

    def leave(self, listener: SharedListener, shared: SharedPort) -> Optional[Deferred[Any]]:
        """Remove ``listener``; close the socket if nobody else uses it."""
        if listener not in shared.listeners:
            return None
        shared.listeners.remove(listener)
        listener.member.stop()
        if shared.listeners:
            shared.serve()
            return None
        key = self._key(shared.address)
        if key is not None and self._ports.get(key) is shared:
            del self._ports[key]
        port, _ = shared.release()
        return None if port is None else maybeDeferred(port.stopListening)

    def replace(self, old: SharedListener, new: SharedListener, shared: SharedPort) -> None:
        """Put ``new`` in ``old``'s place on ``shared``."""
        if old in shared.listeners:
            shared.listeners[shared.listeners.index(old)] = new
            old.member.stop()
        else:
            shared.listeners.append(new)
        new.member.start()
        shared.serve()

    def take(self, listener: SharedListener, port: IListeningPort, address: ListenAddress,
             bound: Optional[int], previous: Any) -> SharedPort:
        """Share a socket another kind of listener bound (a service turning to TLS)."""
        shared = SharedPort(address, self._make_router)
        shared.listeners.append(listener)
        shared.take(port, address, bound, previous)
        key = self._key(listener.address)
        if key is not None:
            self._ports[key] = shared
        listener.member.start()
        return shared

    def surrender(self, shared: SharedPort) -> Tuple[Optional[IListeningPort], Any]:
        """
        Hand ``shared``'s socket to another kind of listener (a service
        giving up TLS): every member stops serving it, and the socket and
        what served it are returned.
        """
        for listener in shared.listeners:
            listener.member.stop()
            listener.shared = None
        shared.listeners.clear()
        for key, port in list(self._ports.items()):
            if port is shared:
                del self._ports[key]
        return shared.release()


@implementer(IListener)
class SharedListener(ListenerService):
    """One service's listener on a socket it may share with other TLS services."""

    def __init__(self, address: ListenAddress, open_port: OpenPort, member: Member,
                 ports: SharedPorts) -> None:
        self.address = address
        self.member = member
        self._open_port = open_port
        self._ports = ports
        #: The socket it is on, once started (or adopted).
        self.shared: Optional[SharedPort] = None

    def _listen(self) -> None:
        if self.shared is None:
            self.shared = self._ports.join(self, self._open_port)
            port = self.shared.port
            assert port is not None
            self.address = self.shared.address
            self.shared.bound_port = emit_listening(self.address, port)

    # -- IListener ------------------------------------------------------------

    def bound_port(self) -> Optional[int]:
        return None if self.shared is None else self.shared.bound_port

    def status(self) -> ListenStatus:
        return ListenStatus(ListenState.CLOSED if self.shared is None
                            else ListenState.LISTENING)

    def listening_socket(self) -> Optional[socket.socket]:
        port = None if self.shared is None else self.shared.port
        return None if port is None else twistedprivate.listening_socket(port)

    def adopt(self, predecessor: IListener) -> None:
        if isinstance(predecessor, SharedListener):
            shared, predecessor.shared = predecessor.shared, None
            if shared is not None:
                self._ports.replace(predecessor, self, shared)
                self.shared, self.address = shared, shared.address
            return
        if not isinstance(predecessor, Listener):
            raise TypeError(f"a SharedListener cannot take the socket of {predecessor!r}")
        address, bound = predecessor.address, predecessor.bound_port()
        port, previous = predecessor.release()
        if port is not None:
            self.shared = self._ports.take(self, port, address, bound, previous)
            self.address = address

    def close(self) -> Optional[Deferred[Any]]:
        shared, self.shared = self.shared, None
        if shared is None:
            return None
        return self._ports.leave(self, shared)

    def release(self) -> Tuple[Optional[IListeningPort], Any]:
        """Give the socket up to a ``Listener`` replacing this service's
        listener (the service no longer uses TLS)."""
        shared, self.shared = self.shared, None
        if shared is None:
            return None, None
        return self._ports.surrender(shared)

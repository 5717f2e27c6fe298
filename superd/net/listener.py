"""
One listening socket of one service, as a Twisted ``Service``: bound in
``privilegedStartService`` (before twistd could drop privileges), closed in
``stopService``; a reload hands the bound port to a new ``Listener``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort

from superd.net.address import ListenAddress
from superd.net.sockets import emit_listening, open_with_fallback

__all__ = ["Listener"]


class Listener(Service):
    """Listens on one address for one service; the port opens at privileged start."""

    def __init__(self, address: ListenAddress,
                 open_port: Callable[[ListenAddress], IListeningPort],
                 target: Any = None) -> None:
        self.address = address
        self._open_port = open_port
        #: The factory (stream) or protocol (dgram) serving the port: a
        #: reload moves the bound port to a new Listener and its target.
        self.target = target
        self.port: Optional[IListeningPort] = None
        self.bound_port: Optional[int] = None

    def _listen(self) -> None:
        if self.port is None:
            self.address, port = open_with_fallback(self._open_port, self.address)
            self.port = port
            self.bound_port = emit_listening(self.address, port)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        self._listen()  # runners that skip privilegedStartService (twist)

    def stopService(self) -> Optional[Deferred[Any]]:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        stop: Callable[[], Any] = port.stopListening
        return maybeDeferred(stop)

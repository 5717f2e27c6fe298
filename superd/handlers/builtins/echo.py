"""
Echo (RFC 862): send back every byte received.

Stream: the protocol registers itself as a streaming producer with its own
transport, so when the client stops reading and the transport's write
buffer fills, reading from the client stops too (the kernel's receive
window then holds the client back): memory stays bounded.  On superd's own
TCP transports (``superd.net.connection``, ``superd.net.bare``), whose
writes go straight to the socket while nothing is buffered, it registers
only once a write leaves bytes in a buffer -- the only time pausing can
matter -- so a short echo costs no registration at all.  It is half-close aware: when the
client shuts its write side, the rest of the echo is flushed and the
connection closed.

Datagram: the reply is the datagram itself (``superd.handlers.builtins.udp`` decides
whether a reply may be sent at all).
"""

from __future__ import annotations

from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from zope.interface import implementer

from superd.handlers.builtins.base import BuiltinProtocol
from superd.net.bare import BareConnection
from superd.net.connection import Connection

__all__ = ["EchoStream", "echo_reply"]


@implementer(IPushProducer, IHalfCloseableProtocol)
class EchoStream(BuiltinProtocol):
    """Echoes a stream connection, reading only as fast as the client reads."""

    logs_exit = True
    #: A ``TakingPort`` may serve it on the bare descriptor (``superd.net.bare``).
    serves_bare = True
    #: Registered as the transport's producer (see the module docstring).
    _producing = False

    def serve(self) -> None:
        if not isinstance(self.transport, (Connection, BareConnection)):
            self._produce()

    def _produce(self) -> None:
        self._producing = True
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        transport = self.transport
        transport.write(data)
        if not self._producing and transport.buffered():
            self._produce()

    # IPushProducer: our "production" is reading from the client.
    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass

    def readConnectionLost(self) -> None:
        if self._producing:
            # A registered producer would keep the connection open forever.
            self._producing = False
            self.transport.unregisterProducer()
        self.close_gracefully()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()


def echo_reply(data: bytes) -> bytes:
    """The echo service's reply to a datagram: the datagram itself."""
    return data

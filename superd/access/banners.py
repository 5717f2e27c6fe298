"""
``banner``, ``banner_success`` and ``banner_fail``: read once, sent from memory.

xinetd opens and copies each banner file on every connection; superd reads
them when the service is loaded (at most ``MAX_BANNER`` bytes each) and
never touches the disk while serving.  A banner that cannot be read is
reported with its configuration line and left out.

A refused peer with ``banner_fail`` gets ``FailBannerProtocol``: the banner,
a half-close (FIN after the data), input drained and discarded, and an
abort a few seconds later -- a refused peer is never served and never holds
a socket for long.  The half-close matters: closing a socket with unread
input makes the kernel send an RST, which can discard the banner before
the client reads it.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import tcp
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.config.model import ServiceConfig
from superd.observe import events

__all__ = ["MAX_BANNER", "Banners", "FailBannerProtocol", "send_now"]

_log = Logger(namespace="superd")

MAX_BANNER = 64 * 1024
#: Seconds a refused peer may take to read ``banner_fail``.
FAIL_LINGER = 3.0


def _read(service: ServiceConfig, attribute: str) -> bytes | None:
    path = getattr(service, attribute)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BANNER + 1)
    except OSError as e:
        _log.error("{location}: service {service_id}: {attribute}: cannot read"
                   " {path}: {error}", event=events.EV_CONFIG_WARNING,
                   location=str(service.line_of(attribute)),
                   service_id=service.id, attribute=attribute, path=path,
                   error=e.strerror)
        return None
    if len(data) > MAX_BANNER:
        _log.warn("{location}: service {service_id}: {attribute}: {path} is"
                  " longer than {limit} bytes; sending the start",
                  event=events.EV_CONFIG_WARNING,
                  location=str(service.line_of(attribute)),
                  service_id=service.id, attribute=attribute, path=path,
                  limit=MAX_BANNER)
    return data[:MAX_BANNER] or None


@attrs.frozen
class Banners:
    """The banner texts of one service, as loaded."""

    banner: bytes | None = None
    success: bytes | None = None
    fail: bytes | None = None

    @classmethod
    def load(cls, service: ServiceConfig) -> Banners:
        """Read the service's banner files (at load time, never per peer)."""
        return cls(_read(service, "banner"), _read(service, "banner_success"),
                   _read(service, "banner_fail"))


def send_now(transport: Any, data: bytes) -> bool:
    """
    Send ``data`` straight to the socket if it takes it all, else queue the
    rest on the transport; True if everything left at once.

    Sending directly matters when the connection is then handed to a child:
    bytes still queued in Twisted's buffer would be lost with the hand-off.
    """
    # Only a plain TCP transport: a TLS transport forwards attribute reads
    # to the TCP connection below it, whose socket must never see cleartext.
    sock = transport.socket if isinstance(transport, tcp.Connection) else None
    sent = 0
    if sock is not None:
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False
    if sent < len(data):
        transport.write(data[sent:])
        return False
    return True


@implementer(IHalfCloseableProtocol)
class FailBannerProtocol(Protocol):
    """Sends ``banner_fail`` to a refused peer, then closes."""

    def __init__(self, banner: bytes, clock: Any,
                 linger: float = FAIL_LINGER) -> None:
        self.banner = banner
        self._clock = clock
        self._linger = linger
        self._abort: Any = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.write(self.banner)
        transport.loseWriteConnection()
        self._abort = self._clock.callLater(self._linger,
                                            transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        """Input from a refused peer is discarded unread."""

    def readConnectionLost(self) -> None:
        transport: Any = self.transport
        transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our half-close is done; wait for the peer's."""

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._abort is not None and self._abort.active():
            self._abort.cancel()

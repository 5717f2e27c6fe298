"""
The HTTP side of ``--metrics``: who may scrape, and for how long.

A scrape is one small request answered at once, so the endpoint is strict
where twisted.web is general (a twisted.web ``Site`` still parses and
answers; these are the limits around it):

* ``GET`` and ``HEAD`` only: any other method is answered 405 as soon as the
  request line is in;
* no request body: a ``Content-Length`` other than 0 or any
  ``Transfer-Encoding`` is answered 413 as soon as that header is in, before
  twisted.web would spool the body to a temporary file;
* one request per connection, and the whole connection within ``DEADLINE``
  seconds of its start, however it trickles (twisted.web's own timeout is
  reset by every byte received);
* the request line and headers within ``MAX_HEAD`` bytes;
* at most ``MAX_PER_SOURCE`` connections from one address and
  ``MAX_CLIENTS`` in all.  A newcomer over a limit takes the place of the
  connection (of the same address, for the per-address limit) that has
  waited longest without sending its whole request, and is refused only when
  every one of those is being answered: clients that send slowly cannot keep
  out a scrape, whose request comes in its first packet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http import Request as HTTPRequest
from twisted.web.resource import Resource
from twisted.web.server import Site

__all__ = ["DEADLINE", "MAX_CLIENTS", "MAX_HEAD", "MAX_PER_SOURCE", "ScrapeChannel",
           "ScrapeSite"]

#: Seconds from connecting to the end of the answer, whatever the client does.
DEADLINE: Final = 5.0
#: Bytes of request line and headers.
MAX_HEAD: Final = 8192
#: Headers in one request.
MAX_HEADERS: Final = 64
#: Concurrent connections, from one address and in all.
MAX_PER_SOURCE: Final = 4
MAX_CLIENTS: Final = 16

_METHODS: Final = frozenset({b"GET", b"HEAD"})


class ScrapeChannel(HTTPChannel):
    """One scrape connection: one bodiless GET or HEAD within ``DEADLINE``."""

    transport: Any = None
    factory: "ScrapeSite"
    totalHeadersSize = MAX_HEAD
    MAX_LENGTH = MAX_HEAD
    maxHeaders = MAX_HEADERS
    #: True once the request line and headers are in.
    requested = False
    _started = False
    _deadline: Optional[IDelayedCall] = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._deadline = self.callLater(DEADLINE, self._expired)

    def lineReceived(self, line: bytes) -> None:
        if not self._started:
            self._started = True
            if line.split(b" ", 1)[0] not in _METHODS:
                self._refuse(b"405 Method Not Allowed", b"Allow: GET, HEAD\r\n")
                return
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" or (
                name == b"content-length" and value.strip() != b"0"):
            self._refuse(b"413 Content Too Large")
            return False
        return bool(super().headerReceived(line))

    def allHeadersReceived(self) -> None:
        self.requested = True
        super().allHeadersReceived()

    def checkPersistence(self, request: HTTPRequest, version: bytes) -> bool:
        # One request per connection: the deadline and the slot are its own.
        request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
        return False

    def _refuse(self, status: bytes, headers: bytes = b"") -> None:
        # Answered without reading further: what is still coming is not read.
        self.transport.write(b"HTTP/1.1 " + status + b"\r\n" + headers
                             + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        self.loseConnection()

    def _expired(self) -> None:
        self._deadline = None
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.factory.closed(self)
        super().connectionLost(reason)


class ScrapeSite(Site):
    """A quiet ``Site`` of ``ScrapeChannel`` connections within the limits."""

    noisy = False
    # twisted.web types this as its private HTTP/2-negotiating wrapper; a
    # plain HTTPChannel subclass is what HTTPFactory builds it from, and all
    # a cleartext endpoint needs.
    protocol = ScrapeChannel  # type: ignore[assignment]

    def __init__(self, resource: Resource, reactor: Any) -> None:
        # No idle timeout: the channel's deadline bounds every connection.
        super().__init__(resource, timeout=None, reactor=reactor)
        #: Open connections and their source, oldest first.
        self._open: dict[ScrapeChannel, str] = {}

    def log(self, request: HTTPRequest) -> None:
        """No line per request: a scrape every few seconds is not news."""

    def buildProtocol(self, addr: Any) -> Optional[ScrapeChannel]:  # type: ignore[override]
        source = str(getattr(addr, "host", "local"))
        mine = [c for c, s in self._open.items() if s == source]
        if len(mine) >= MAX_PER_SOURCE and not self._replace_slowest(mine):
            return None
        if len(self._open) >= MAX_CLIENTS and not self._replace_slowest(self._open):
            return None
        channel: ScrapeChannel = super().buildProtocol(addr)
        self._open[channel] = source
        return channel

    def _replace_slowest(self, channels: Iterable[ScrapeChannel]) -> bool:
        """Abort the oldest of ``channels`` still sending its request;
        False if every one of them is being answered."""
        for channel in channels:
            if not channel.requested:
                del self._open[channel]
                channel.transport.abortConnection()
                return True
        return False

    def closed(self, channel: ScrapeChannel) -> None:
        """``channel`` is gone: its place is free."""
        self._open.pop(channel, None)

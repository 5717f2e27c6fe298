"""
Reading a PROXY header off a connection's socket, and not a byte more.

The header may be followed at once by the client's first bytes (HAProxy
sends them in the same segment when it can), and the connection may next
be handed to a server process, which can only receive what the kernel
still holds.  So the reader peeks (``MSG_PEEK``) at what is queued, asks
``superd.net.proxywire.header_length`` how much of it is header, and
receives exactly that much; the rest stays queued for whoever serves the
connection next -- a spawned server, a TLS handshake, a builtin.

Each wake-up of the reactor peeks and takes at most ``V2_MAX`` bytes, so a
header split over many segments is read as they come, memory is bounded,
and a peer sending more than a header allows is refused as soon as that is
known.  Time is bounded by the caller (``superd.access.proxied``).
"""

from __future__ import annotations

import socket
from typing import AbstractSet, Any, Callable, Optional, Union

from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.net.proxywire import V2_MAX, HeaderError, header_length

__all__ = ["HeaderReader", "Outcome"]

#: A complete header's bytes, or why none could be read (a ``HeaderError``).
Outcome = Union[bytes, HeaderError]


@implementer(IReadDescriptor)
class HeaderReader:
    """
    Reads one PROXY header of ``versions`` from ``sock`` while registered
    with the reactor as a reader, then calls ``done`` once with the header's
    bytes or a ``HeaderError``.  ``writer``: the connection whose descriptor
    this is, which still gets its write events (epoll keeps one object per
    descriptor).
    """

    def __init__(self, sock: socket.socket, versions: AbstractSet[int],
                 done: Callable[[Outcome], None], writer: Any = None) -> None:
        self.sock = sock
        self._versions = versions
        self._done: Optional[Callable[[Outcome], None]] = done
        self._writer = writer
        self._header = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "proxy-header"

    def doWrite(self) -> Any:
        return None if self._writer is None else self._writer.doWrite()

    def doRead(self) -> None:
        try:
            queued = self.sock.recv(V2_MAX - len(self._header), socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError as e:
            self._finish(HeaderError(f"cannot read the header: {e.strerror or e}"))
            return
        if not queued:
            self._finish(HeaderError("connection closed before the header ended"))
            return
        try:
            total = header_length(self._header + queued, self._versions)
        except HeaderError as e:
            self._finish(e)
            return
        take = len(queued) if total is None else total - len(self._header)
        self._header += self.sock.recv(take)
        if total is not None and len(self._header) >= total:
            self._finish(self._header)

    def _finish(self, outcome: Outcome) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(outcome)

    def connectionLost(self, reason: Failure) -> None:
        self._finish(HeaderError("connection lost before the header ended"))

"""
The transport of every stream connection a ``TakingPort`` accepts: Twisted's
``tcp.Server`` with two shortcuts for a connection whose write buffer is
empty, the common case of a request/reply service.

Twisted's ``FileDescriptor`` never writes from ``write()``: it buffers the
bytes and asks the reactor for a writable event, so each reply costs a turn
of the reactor and two ``epoll_ctl`` calls.  It closes only from
``doWrite()`` too, so ``loseConnection()`` on a flushed connection costs
another turn, two more ``epoll_ctl`` and a ``send(b"")``.  Here

* ``write`` sends at once when nothing is buffered and buffers only what
  the kernel did not take (all of it when the socket would block; on any
  other error too, so that ``doWrite`` meets the error and loses the
  connection the usual way);
* ``close_if_flushed`` closes at once -- FIN, then ``connectionLost`` --
  when nothing is buffered and no producer is registered, doing what
  ``doWrite`` would have done on its next turn (also after a finished
  half-close);
* ``close_writing_if_flushed`` half-closes at once the same way -- FIN,
  then the protocol's ``writeConnectionLost`` -- where
  ``loseWriteConnection`` would wait for ``doWrite`` (a relay half-closes
  each of its connections).

Both leave everything else to Twisted: a connection with bytes buffered, a
producer, a half-close under way, or TLS started on it (``startTLS``).  They
read ``FileDescriptor``'s buffer attributes (``dataBuffer``, ``offset``,
``_tempDataLen``) and call ``tcp.Connection._closeWriteConnection``; a test
pins those names.
"""

from __future__ import annotations

from errno import EAGAIN, EINTR, ENOBUFS, EWOULDBLOCK
from typing import Any

from twisted.internet import tcp
from twisted.internet.protocol import Protocol, connectionDone

from superd.net.bare import BareConnection

__all__ = ["Connection", "close_if_flushed", "close_writing_if_flushed"]

#: send() errors after which the bytes are simply buffered for doWrite.
_RETRY_LATER = frozenset({EWOULDBLOCK, EAGAIN, ENOBUFS, EINTR})


class Connection(tcp.Server):
    """A server-side TCP transport that writes and closes without a reactor turn."""

    def _getLogPrefix(self, applicationObject: object) -> str:
        # Twisted asks every new connection's protocol for its log prefix
        # through an interface lookup; Protocol's own answer is its class
        # name, known without one.
        protocol = type(applicationObject)
        if getattr(protocol, "logPrefix", None) is Protocol.logPrefix:
            return protocol.__name__
        prefix: str = super()._getLogPrefix(applicationObject)
        return prefix

    def buffered(self) -> bool:
        """True while written bytes wait in Twisted's buffer for ``doWrite``."""
        return bool(self._tempDataLen) or self.offset != len(self.dataBuffer)

    def _flushed(self, half_closed: bool = False) -> bool:
        """Nothing buffered, plain TCP, connected and not closing (the
        write side not being closed; or already closed, if ``half_closed``)."""
        if (self._tempDataLen or self.offset != len(self.dataBuffer) or self.TLS
                or not self.connected or self.disconnecting):
            return False
        if half_closed and self._writeDisconnected:
            return True
        return not self._writeDisconnecting and not self._writeDisconnected

    def write(self, data: bytes) -> None:
        # Larger than one SEND_LIMIT: Twisted's buffer sends it in slices
        # without copying, where a partly sent write here would copy the rest.
        # (_flushed() written out: this runs for every reply.)
        if (type(data) is not bytes or len(data) > self.SEND_LIMIT or self._tempDataLen
                or self.offset != len(self.dataBuffer) or self.TLS or not self.connected
                or self.disconnecting or self._writeDisconnecting or self._writeDisconnected):
            super().write(data)
            return
        try:
            sent = self.socket.send(data)
        except OSError as e:
            # Would block: doWrite sends it.  Anything else (a reset): doWrite
            # meets the error again and loses the connection, as Twisted does.
            sent = 0
            if e.errno not in _RETRY_LATER:
                super().write(data)
                return
        if sent < len(data):
            super().write(data[sent:])

    def close_if_flushed(self) -> bool:
        """Close now if nothing is left to send (True); else do nothing (False)."""
        if self.producer is not None or not self._flushed(half_closed=True):
            return False
        self.disconnecting = True
        self.connectionLost(connectionDone)  # stops reading and writing first
        return True

    def close_writing_if_flushed(self) -> bool:
        """Half-close now if nothing is left to send (True); else do nothing (False)."""
        if self.producer is not None or not self._flushed():
            return False
        # What doWrite does for loseWriteConnection once the buffer is empty:
        # shutdown(SHUT_WR), then the protocol's writeConnectionLost.
        self._writeDisconnecting = self._writeDisconnected = True
        self._closeWriteConnection()
        return True


def close_if_flushed(transport: Any) -> bool:
    """``close_if_flushed`` of a ``Connection`` or ``BareConnection``; False for
    any other transport."""
    # isinstance, not getattr: Twisted's TLS wrapper passes unknown attributes
    # through to the TCP connection under it, which must not be closed
    # before the TLS close_notify has been sent.
    return (isinstance(transport, (Connection, BareConnection))
            and transport.close_if_flushed())


def close_writing_if_flushed(transport: Any) -> bool:
    """``close_writing_if_flushed`` of a ``Connection`` or ``BareConnection``; False
    for any other transport."""
    return (isinstance(transport, (Connection, BareConnection))
            and transport.close_writing_if_flushed())

"""
The listening port of stream services: Twisted's ``tcp.Port``, except that
its factory may take an accepted socket before it becomes a transport.

A connection handed to a ``wait = no`` server is the common case of an
inetd, and through a plain ``tcp.Port`` it costs superd a ``tcp.Server``
(registered with epoll, then unregistered), a protocol, a ``Failure`` and a
``connectionLost`` chain, only to give the descriptor away: about a quarter
of what superd spends per spawned connection.  Here the factory's
``take_socket(socket, address)`` sees the accepted socket first and returns

* ``TAKEN``: it admitted the peer and gave the socket to a child (it closed
  its copy); nothing else happens;
* ``None``: refused; the socket is closed, as ``tcp.Port`` does;
* a protocol: served as ``tcp.Port`` would (a gate waiting for a name
  lookup, a banner, a builtin ...).

A factory without ``take_socket`` (TLS, or a reload that put another kind
of service on the port) is served exactly as by ``tcp.Port``.  The accept
loop itself is Twisted's: ``_accept`` (the reserved descriptor that keeps
accepting-and-closing when descriptors run out, and its logs) and the
adaptive number of accepts per wake-up are reused, not rewritten; a test
pins those private names.
"""

from __future__ import annotations

import socket
from typing import Any, Final

from twisted.internet import tcp
from twisted.python import log

__all__ = ["MAX_ACCEPTS_PER_WAKE", "TAKEN", "Taken", "TakingPort", "adopt_taking", "listen_taking"]


class Taken:
    """The type of ``TAKEN``."""

    def __repr__(self) -> str:
        return "TAKEN"


#: At most this many connections are accepted per wake-up (tcp.Port's start).
MAX_ACCEPTS_PER_WAKE = 100

#: What ``take_socket`` returns when it gave the socket away.
TAKEN: Final = Taken()


class TakingPort(tcp.Port):
    """A ``tcp.Port`` whose factory may take accepted sockets (see module)."""

    def doRead(self) -> None:
        take = getattr(self.factory, "take_socket", None)
        if take is None:
            super().doRead()
            return
        try:
            with tcp._BuffersLogs(self._logger.namespace,
                                  self._logger.observer) as buffering:
                accepted = 0
                clients = tcp._accept(buffering, range(self.numberAccepts),
                                      self.socket, tcp._reservedFD)
                for skt, addr in clients:
                    accepted += 1
                    self._serve(take, skt, addr)
            # Twisted's scaling of accepts per wake-up (tcp.Port.doRead),
            # capped: each accept here may spawn a child, which blocks the
            # reactor until the child execs, so an ever-growing batch under a
            # flood would starve the other services and the reaping of ended
            # children.
            if accepted == self.numberAccepts:
                self.numberAccepts = min(self.numberAccepts + 20, MAX_ACCEPTS_PER_WAKE)
            else:
                self.numberAccepts = max(1, accepted)
        except BaseException:
            log.deferr()

    def _serve(self, take: Any, skt: socket.socket, addr: Any) -> None:
        if len(addr) == 4:  # IPv6: keep the scope id, as tcp.Port does
            host = socket.getnameinfo(addr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
            addr = (host[0], *addr[1:])
        outcome = take(skt, self._buildAddr(addr))
        if outcome is TAKEN:
            return
        if outcome is None:
            skt.close()
            return
        number = self.sessionno
        self.sessionno = number + 1
        transport = self.transport(skt, outcome, addr, self, number, self.reactor)
        outcome.makeConnection(transport)


def listen_taking(reactor: Any, port: int, factory: Any, backlog: int,
                  interface: str) -> TakingPort:
    """``reactor.listenTCP`` with a ``TakingPort``; raises ``CannotListenError``."""
    listening = TakingPort(port, factory, backlog, interface, reactor)
    listening.startListening()
    return listening


def adopt_taking(reactor: Any, fd: int, family: socket.AddressFamily,
                 factory: Any) -> TakingPort:
    """``reactor.adoptStreamPort`` with a ``TakingPort`` (the reactor keeps a dup)."""
    listening: TakingPort = TakingPort._fromListeningDescriptor(reactor, fd, family, factory)
    listening.startListening()
    return listening

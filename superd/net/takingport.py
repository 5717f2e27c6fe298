"""
The listening port of stream services: Twisted's ``tcp.Port``, except that
its factory may take an accepted connection before it becomes a transport
-- or even a Python socket object.

A connection handed to a ``wait = no`` server is the common case of an
inetd, and through a plain ``tcp.Port`` it costs superd a ``socket.socket``
(whose constructor asks the kernel for the local address again), a
``tcp.Server`` (registered with epoll, then unregistered), a protocol, a
``Failure`` and a ``connectionLost`` chain, only to give the descriptor away:
together a large share of what superd spends per spawned connection.
Here a factory with a ``take_connection`` callable gets the bare descriptor
first, as ``take_connection(fd, address, local)`` -- ``address`` the peer's
address tuple as ``accept()`` returns it, ``local`` the port's own address
as a ``Peer`` when every connection shares it (a port bound to one address),
else None -- and returns

* ``TAKEN``: it admitted the peer and served the descriptor (gave it to a
  child, or wrote daytime's reply); the port closes the descriptor, and
  nothing else happens;
* ``None``: refused; the port closes the descriptor, as ``tcp.Port`` closes
  the socket;
* a protocol: served as ``tcp.Port`` would (a gate waiting for a name
  lookup, a banner, a builtin ...) on a socket made from the descriptor;
  or, when the protocol's ``serves_bare`` is true (echo), on the bare
  descriptor itself (``superd.net.bare``).

A factory whose connections are over as soon as they are taken (daytime,
time) may ask for them in batches: with ``batch_size`` N > 0 (and
``begin_batch()``, ``end_batch()``), the port accepts up to N connections,
then calls ``begin_batch()``, takes each, and calls ``end_batch()``, so
that what holds for the whole batch (the access policies that cannot
refuse anyone now, looked at once) is worked out once, not per connection.
As every connection of a batch is accepted before ``begin_batch()``, all
of them arrived before it looks: a hosts.allow line written before a client
connected applies to it, as when each is decided alone.  A batch holds at
most N descriptors more than one at a time.  Without ``batch_size``, or
through a port that does not batch (a UNIX socket), every connection is
decided on its own as it is accepted.

A factory whose ``take_connection`` is None or absent (TLS, a builtin that
keeps talking, or a reload that put another kind of service on the port) is
served exactly as by ``tcp.Port``.  Twisted's pieces of the accept loop are
reused through ``superd.core.twistedprivate``: the reserved descriptor that
keeps accepting-and-closing when descriptors run out, the buffering of logs
while it is released, the list of accept errors to log and survive, and the
adaptive number of accepts per wake-up.  The loop around them is written
here because Twisted's yields socket objects.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator
from errno import EAGAIN, EMFILE, EPERM, EWOULDBLOCK, errorcode
from typing import Any, Final

from twisted.internet import tcp
from twisted.logger import Logger
from twisted.python import log

from superd.core import twistedprivate
from superd.core.session import Peer
from superd.net.bare import BareConnection, ordinary_transport
from superd.net.connection import Connection
from superd.observe import events

__all__ = ["MAX_ACCEPTS_PER_WAKE", "TAKEN", "Batches", "Taken", "TakingPort", "accept_descriptors",
           "adopt_taking", "listen_taking", "serve_accepted"]


class Taken:
    """The type of ``TAKEN``."""

    def __repr__(self) -> str:
        return "TAKEN"


#: At most this many connections are accepted per wake-up (tcp.Port's start).
MAX_ACCEPTS_PER_WAKE = 100

#: What ``take_connection`` returns when it gave the connection away.
TAKEN: Final = Taken()

_WILDCARDS = frozenset({"0.0.0.0", "::"})


def accept_descriptors(logger: Logger, accepts: Iterable[object], listener: socket.socket,
                       reserved: Any) -> Iterator[tuple[int, Any]]:
    """
    Twisted's accept loop for bare descriptors: yield ``(fd, address)`` for each
    pending connection, at most one per item of ``accepts``, until none is
    left or accepting fails.  The descriptors are close-on-exec and blocking
    (``accept4`` without ``SOCK_NONBLOCK``, whatever default timeout the
    process set for Python sockets).  Errors are handled as Twisted does:
    EMFILE releases ``reserved`` and accepts-and-closes until the backlog is
    empty; the other accept errors are logged and end this wake-up.
    """
    accept = twistedprivate.descriptor_acceptor(listener)
    for _ in accepts:
        try:
            fd, address = accept()
        except OSError as e:
            if e.errno in (EWOULDBLOCK, EAGAIN):
                return
            if e.errno == EPERM:  # netfilter refused it; accept the next one
                continue
            if e.errno == EMFILE and reserved.available():
                logger.info("EMFILE encountered; releasing reserved file descriptor.",
                            event=events.EV_ACCEPT_FAILED, error="EMFILE")
                # Nothing here may open a descriptor: the logger buffers.
                with reserved:
                    for spare, refused in accept_descriptors(logger, accepts, listener, reserved):
                        os.close(spare)
                        logger.info("EMFILE recovery: Closed socket from {address}",
                                    event=events.EV_ACCEPT_FAILED, error="EMFILE",
                                    address=refused)
                    logger.info("Re-reserving EMFILE recovery file descriptor.",
                                event=events.EV_ACCEPT_FAILED, error="EMFILE")
                return
            if e.errno in twistedprivate.ACCEPT_ERRORS:
                logger.info("Could not accept new connection ({error})",
                            event=events.EV_ACCEPT_FAILED, error=errorcode[e.errno])
                return
            raise
        yield fd, address


class Batches:
    """
    How a factory wants its connections handed over in batches: the port
    accepts up to ``size`` of them, then calls ``begin()``, serves each,
    and calls ``end()``.
    """

    def __init__(self, size: int, begin: Callable[[], object],
                 end: Callable[[], object]) -> None:
        self.size = size
        self._begin = begin
        self._end = end

    def serve(self, held: list[tuple[int, Any]], serve: Callable[[int, Any], None]) -> None:
        """Serve every connection in ``held`` (emptied), each on its own: one
        that fails is logged and the others are still served, so no
        descriptor is left behind."""
        try:
            self._begin()
        except Exception:
            log.deferr()  # the factory decides each connection on its own
        pending = iter(held)
        try:
            for fd, address in pending:
                try:
                    serve(fd, address)
                except Exception:
                    log.deferr()  # serve closed the descriptor
        finally:
            for fd, _ in pending:  # only after a BaseException (the process ends)
                os.close(fd)
            held.clear()
            self._end()


def serve_accepted(port: tcp.Port, serve: Callable[[int, Any], None],
                   batches: Batches | None = None) -> None:
    """
    ``port.doRead`` for bare descriptors: accept what is pending (at most
    ``port.numberAccepts``) and ``serve(fd, address)`` each -- as it is
    accepted, or with ``batches`` a batch at a time; ``serve`` owns the
    descriptor.  An exception is logged, as ``tcp.Port.doRead`` does.
    """
    try:
        with twistedprivate.buffered_port_logs(port) as buffering:
            accepted = 0
            held: list[tuple[int, Any]] = []
            try:
                for fd, address in accept_descriptors(
                        buffering, range(port.numberAccepts), port.socket,
                        twistedprivate.reserved_descriptor()):
                    accepted += 1
                    if batches is None:
                        serve(fd, address)
                        continue
                    held.append((fd, address))
                    if len(held) >= batches.size:
                        batches.serve(held, serve)
            finally:
                if held:
                    batches.serve(held, serve)  # type: ignore[union-attr]
        # Twisted's scaling of accepts per wake-up (tcp.Port.doRead),
        # capped: each accept here may spawn a child, which blocks the
        # reactor until the child execs, so an ever-growing batch under a
        # flood would starve the other services and the reaping of ended
        # children.
        if accepted == port.numberAccepts:
            port.numberAccepts = min(port.numberAccepts + 20, MAX_ACCEPTS_PER_WAKE)
        else:
            port.numberAccepts = max(1, accepted)
    except BaseException:
        log.deferr()


class TakingPort(tcp.Port):
    """A ``tcp.Port`` whose factory may take accepted connections (see module)."""

    transport = Connection

    #: The local address of every accepted connection, when the port is
    #: bound to one address (set when listening starts).
    local: Peer | None = None

    def startListening(self) -> None:
        super().startListening()
        host, port = self.socket.getsockname()[:2]
        self.local = None if host in _WILDCARDS else Peer.from_address((host, port))

    #: The factory's ``take_connection`` during a wake-up.
    _take: Any = None

    def doRead(self) -> None:
        factory: Any = self.factory
        take = getattr(factory, "take_connection", None)
        if take is None:
            super().doRead()
            return
        self._take = take
        size = getattr(factory, "batch_size", 0)
        if size > 0:
            serve_accepted(self, self._serve,
                           Batches(size, factory.begin_batch, factory.end_batch))
        else:
            serve_accepted(self, self._serve)

    def _serve(self, fd: int, address: Any) -> None:
        try:
            outcome = self._take(fd, address, self.local)
        except BaseException:
            os.close(fd)
            raise
        if outcome is TAKEN or outcome is None:
            os.close(fd)
            return
        # On the class: a wrapping protocol (TLS) passes unknown attributes
        # through to the protocol it wraps, which may serve bare itself.
        if getattr(type(outcome), "serves_bare", False):
            try:
                transport = BareConnection(self, fd, address, outcome)
            except BaseException:
                os.close(fd)
                raise
            outcome.makeConnection(transport)
            return
        outcome.makeConnection(ordinary_transport(self, fd, outcome, address))


def listen_taking(reactor: Any, port: int, factory: Any, backlog: int,
                  interface: str) -> TakingPort:
    """``reactor.listenTCP`` with a ``TakingPort``; raises ``CannotListenError``."""
    listening = TakingPort(port, factory, backlog, interface, reactor)
    listening.startListening()
    return listening


def adopt_taking(reactor: Any, fd: int, family: socket.AddressFamily,
                 factory: Any) -> TakingPort:
    """``reactor.adoptStreamPort`` with a ``TakingPort`` (the reactor keeps a dup)."""
    listening: TakingPort = twistedprivate.adopt_listening_descriptor(
        TakingPort, reactor, fd, family, factory)
    listening.startListening()
    return listening

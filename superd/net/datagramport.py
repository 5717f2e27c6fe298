"""
The listening port of datagram services: Twisted's ``udp.Port``, reading at
most ``MAX_DATAGRAMS_PER_WAKE`` datagrams each time the reactor finds it
readable.

``udp.Port.doRead`` reads until it has read ``maxThroughput`` bytes (256 KiB)
or the socket's queue is empty.  Small datagrams hardly count against a byte
budget, and empty ones not at all, so one sender of tiny datagrams that keeps
the queue from emptying keeps the reactor inside a single ``doRead``: every
other service waits, TCP accepts and connections included.  Counting
datagrams bounds each turn, as ``superd.net.takingport`` bounds accepts.
What is left in the queue is read at the next turn (the reactor's poll is
level-triggered), once the other ready descriptors have had theirs; what does
not fit in the queue meanwhile is dropped by the kernel, as it is for any
datagram service slower than its senders.
"""

from __future__ import annotations

import socket
from errno import EAGAIN, ECONNREFUSED, EINTR, EWOULDBLOCK
from typing import Any

from twisted.internet import udp
from twisted.python import log

from superd.core.twistedprivate import adopt_listening_descriptor

__all__ = ["MAX_DATAGRAMS_PER_WAKE", "DatagramPort", "adopt_datagram", "listen_datagram_port"]

#: At most this many datagrams are read per wake-up: few, so that a turn
#: under a flood costs about what serving one TCP connection's step does,
#: yet enough that the reactor's own work per wake-up stays a small part of
#: each datagram's cost.
MAX_DATAGRAMS_PER_WAKE = 4

#: recvfrom errors that end a turn: nothing is queued, or (on a connected
#: socket, which superd's ports never are) an ICMP error was reported.
_END_OF_TURN = frozenset({EAGAIN, EWOULDBLOCK, EINTR, ECONNREFUSED})


class DatagramPort(udp.Port):
    """A ``udp.Port`` that reads a bounded number of datagrams per wake-up."""

    def doRead(self) -> None:
        # udp.Port.doRead with a count instead of a byte budget; everything
        # else as it does: the IPv6 address cut to (host, port), and an
        # exception from the protocol logged without ending the turn.
        for _ in range(MAX_DATAGRAMS_PER_WAKE):
            try:
                data, address = self.socket.recvfrom(self.maxPacketSize)
            except OSError as e:
                if e.errno in _END_OF_TURN:
                    return
                raise
            if self.addressFamily == socket.AF_INET6:
                address = address[:2]
            try:
                self.protocol.datagramReceived(data, address)
            except BaseException:
                log.err()


def listen_datagram_port(reactor: Any, port: int, protocol: Any, interface: str,
                         max_packet_size: int) -> DatagramPort:
    """``reactor.listenUDP`` with a ``DatagramPort``; raises ``CannotListenError``."""
    listening = DatagramPort(port, protocol, interface, max_packet_size, reactor)
    listening.startListening()
    return listening


def adopt_datagram(reactor: Any, fd: int, family: socket.AddressFamily, protocol: Any,
                   max_packet_size: int) -> DatagramPort:
    """``reactor.adoptDatagramPort`` with a ``DatagramPort`` (the port keeps a dup)."""
    # What adoptDatagramPort does, into the bounded subclass.
    listening: DatagramPort = adopt_listening_descriptor(
        DatagramPort, reactor, fd, family, protocol, maxPacketSize=max_packet_size)
    listening.startListening()
    return listening

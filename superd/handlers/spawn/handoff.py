"""
Giving an accepted Twisted TCP connection to a child process.

The recipe: find the real ``tcp.Server`` under any ``ProtocolWrapper``
layers; stop polling it (the epoll registration belongs to the open file
description the child will share); make it blocking (``O_NONBLOCK`` is
shared too, and inetd servers expect blocking I/O); spawn with the socket on
fds 0, 1 and 2; then make Twisted drop *its* descriptor with a plain
``close()`` (``superd.core.twistedprivate.release_descriptor``).
``loseConnection`` would ``shutdown()`` the shared socket under the child
and ``abortConnection`` would make the child's final close an RST.
Afterwards superd holds nothing, and the client sees EOF exactly when the
last process holding the socket closes it.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Optional, TypeVar

from twisted.internet import error, tcp
from twisted.internet.interfaces import INegotiated
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

from superd.core import twistedprivate

__all__ = ["NotHandOffable", "hand_off", "pending_output", "raw_tcp_transport",
           "set_socket_options"]

T = TypeVar("T")


class NotHandOffable(Exception):
    """The transport is not a plain TCP socket (TLS, or not TCP at all)."""


def raw_tcp_transport(transport: Any) -> Optional[tcp.Server]:
    """The ``tcp.Server`` under ``transport``, or None if TLS is involved."""
    layer = transport
    while isinstance(layer, ProtocolWrapper):
        # A TLS layer (twisted.protocols.tls, which provides INegotiated; the
        # interface is recognised without importing OpenSSL): the socket
        # under it carries TLS records, not the service's bytes.
        if INegotiated.providedBy(layer):
            return None
        layer = layer.transport
    if twistedprivate.is_plain_tcp(layer):
        server: tcp.Server = layer
        return server
    return None


def pending_output(server: tcp.Server) -> bytes:
    """Bytes written to ``server`` (a banner, say) that Twisted still holds."""
    return twistedprivate.unsent_bytes(server)


def set_socket_options(sock: socket.socket, *, nodelay: bool, keepalive: bool) -> None:
    """The service's NODELAY/KEEPALIVE flags on a socket about to be handed off."""
    # Options belong to the socket, so they travel to the child.
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


#: Seconds to wait for a client to take bytes written before the hand-off.
FLUSH_TIMEOUT = 2.0


def _flush(sock: socket.socket, unsent: bytes) -> None:
    # Written before the hand-off (a banner, say): deliver it before the
    # child's bytes.  Small, so it normally fits the socket buffer at once;
    # the timeout bounds the wait for a client that does not read.
    if unsent:
        sock.settimeout(FLUSH_TIMEOUT)
        sock.sendall(unsent)


def hand_off(transport: Any, spawn: Callable[[int], T], *,
             nodelay: bool = False, keepalive: bool = False) -> T:
    """
    Call ``spawn(fd)`` with ``transport``'s socket made ready for a child,
    then release superd's copy -- also when ``spawn`` raises, in which case
    the client sees a plain close (FIN).  Returns what ``spawn`` returned.
    """
    server = raw_tcp_transport(transport)
    if server is None:
        raise NotHandOffable(f"cannot hand {transport!r} to a child")
    server.stopReading()
    server.stopWriting()
    sock = server.getHandle()
    fd = sock.fileno()
    try:
        set_socket_options(sock, nodelay=nodelay, keepalive=keepalive)
        _flush(sock, pending_output(server))
        os.set_blocking(fd, True)
        return spawn(fd)
    finally:
        twistedprivate.release_descriptor(
            server, Failure(error.ConnectionDone("handed to child")))

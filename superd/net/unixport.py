"""
The listening port of a ``bind = unix:PATH`` service: Twisted's
``unix.Port``, accepting bare descriptors as ``superd.net.takingport`` does,
with every peer known by its credentials before anything serves it.

For each accepted connection the kernel's record of the connecting process
is read (``SO_PEERCRED``: pid, uid, gid; ``SO_PEERGROUPS``: its
supplementary groups) into a ``UnixPeer``, which is what the factory sees:
``take_connection(fd, peer, local)`` when it can serve a bare descriptor,
else ``buildProtocol(peer)``.  ``local`` is ``Peer(path, 0)``.

The port does not own the socket file: it was made (or passed by systemd)
before the port existed, and ``superd.net.unixsocket.release`` removes it
when the port closes, only if superd made it.  A reload that keeps the
service moves the port itself to the new listener, so the file stays.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any, Tuple

from twisted.internet import unix
from twisted.python.failure import Failure

from superd.core import twistedprivate
from superd.core.session import Peer, UnixPeer
from superd.net import unixsocket
from superd.net.takingport import TAKEN, serve_accepted

__all__ = ["TakingUnixPort", "adopt_unix", "peer_credentials"]

#: ``struct ucred``: pid, uid, gid.
_UCRED = struct.Struct("iII")
#: The kernel's "no such id" (``(uid_t) -1``).
_NO_ID = 0xFFFFFFFF
#: ``SO_PEERGROUPS`` (Linux 4.13); the standard library does not name it.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
#: Groups asked for at first; a peer in more is asked again with room for all.
_FEW_GROUPS = 64
_MAX_GROUPS = 65536


def _groups(sock: socket.socket) -> Tuple[int, ...]:
    for count in (_FEW_GROUPS, _MAX_GROUPS):
        try:
            data = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * count)
        except OSError as e:
            if e.errno == errno.ERANGE:
                continue
            return ()  # an older kernel: only the primary group is known
        return struct.unpack(f"{len(data) // 4}I", data)
    return ()


def peer_credentials(sock: socket.socket, path: str) -> UnixPeer:
    """
    The process connected to ``sock`` as the kernel recorded it when it
    connected.  Unreadable credentials (not expected of a Linux UNIX stream
    socket) give uid and gid -1, which no ``only_uid``/``only_gid`` lists.
    """
    try:
        pid, uid, gid = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return UnixPeer.of(-1, -1, 0, (), path)
    if uid == _NO_ID or gid == _NO_ID:
        return UnixPeer.of(-1, -1, pid, (), path)
    return UnixPeer.of(uid, gid, pid, _groups(sock), path)


class TakingUnixPort(unix.Port):
    """A ``unix.Port`` whose factory sees each peer's credentials (see module)."""

    #: The socket's own address, as ``Peer(path, 0)`` (set when listening starts).
    local: Peer = Peer("", 0)

    @property
    def path(self) -> str:
        """The socket file's path."""
        name = self._bindPath
        return name.decode() if isinstance(name, bytes) else str(name)

    def startListening(self) -> None:
        super().startListening()  # chmods the file again, to the mode it has
        self.local = Peer(self.path, 0)
        unixsocket.touched(self.path)

    def doRead(self) -> None:
        take = getattr(self.factory, "take_connection", None) or self._build
        serve_accepted(self, lambda fd, address: self._serve(take, fd, address))

    def _build(self, fd: int, peer: UnixPeer, local: Peer) -> Any:
        factory: Any = self.factory
        return factory.buildProtocol(peer)

    def _serve(self, take: Any, fd: int, address: Any) -> None:
        # Family and type given: the socket object asks the kernel nothing.
        skt = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
        try:
            outcome = take(fd, peer_credentials(skt, self.local.host), self.local)
        except BaseException:
            skt.close()
            raise
        if outcome is TAKEN or outcome is None:
            skt.close()
            return
        outcome.makeConnection(twistedprivate.server_transport(self, skt, outcome, address))

    def connectionLost(self, reason: Failure) -> None:
        path = self.path
        twistedprivate.unix_port_lost(self, reason)
        unixsocket.release(path)


def adopt_unix(reactor: Any, fd: int, factory: Any, *, mode: int,
               backlog: int) -> TakingUnixPort:
    """A ``TakingUnixPort`` on the listening UNIX socket ``fd`` (the port
    keeps a duplicate); ``mode`` is what its file has now."""
    port: TakingUnixPort = twistedprivate.adopt_unix_listening_descriptor(
        TakingUnixPort, reactor, fd, factory, mode=mode, backlog=backlog)
    port.startListening()
    return port

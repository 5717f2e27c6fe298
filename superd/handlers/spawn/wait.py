"""
``wait = yes`` external servers: the child gets the service's own socket.

Stream: superd does not accept; when a connection is pending it stops polling
the listening socket and starts the server with that socket on fds 0, 1 and
2 (the server accepts for itself), and polls again when the server exits.
REMOTE_HOST is ``<no address>``, as in xinetd.

Datagram: a bare ``IReadDescriptor`` on the bound socket, not ``udp.Port``
(whose ``doRead`` would consume the datagram the child must see).  The
first pending datagram's source is peeked with ``MSG_PEEK`` and checked by
the access layer; a refused source has that one datagram consumed and
dropped.  An admitted one stays queued for the
child.  When the child exits superd simply polls again: unlike xinetd it
discards no queued datagram.

A child that exits within a second without taking its work off the socket
(stream: the connection queue did not shrink and it failed; datagram: the
same first datagram is still queued) is restarted only after a back-off
(``superd.handlers.spawn.backoff``).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any, Literal, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.access.state import AccessState
from superd.config.model import ServiceConfig, SocketType
from superd.core.session import Peer
from superd.handlers.spawn.backoff import RespawnGuard
from superd.handlers.spawn.environ import datagram_environment, wait_stream_environment
from superd.handlers.spawn.handler import log_spawn_failure
from superd.handlers.spawn.spec import SpawnSpec, build_spec
from superd.net import unixsocket
from superd.net.address import ListenAddress
from superd.net.listener import IListener, ListenState, ListenStatus
from superd.net.sockets import bind_socket, emit_listening, emit_not_listening, listen_addresses
from superd.observe.events import EV_RESPAWN_BACKOFF, emit_exit, emit_start
from superd.proc.spawner import ExitStatus, SpawnError
from superd.proc.table import Child, ProcessTable

__all__ = ["WaitPort", "WaitService", "wait_service"]

_log = Logger(namespace="superd.spawn")


#: Bytes of the first datagram compared before and after a child's run.
PEEK_BYTES = 2048
_TCP_LISTEN = 10


def _accept_queue(sock: socket.socket) -> int:
    """Connections waiting in a listening socket's accept queue (Linux
    reports it as ``tcpi_unacked`` for a socket in LISTEN state)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return -1
    if info[0] != _TCP_LISTEN or len(info) < 28:
        return -1
    return int(struct.unpack_from("I", info, 24)[0])


def _first_datagram(sock: socket.socket) -> Optional[Tuple[bytes, Any]]:
    """The first queued datagram (its start) and source, left queued."""
    try:
        return sock.recvfrom(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None


@implementer(IReadDescriptor, IListeningPort)
class WaitPort:
    """One bound socket of a ``wait = yes`` service, and its one child."""

    def __init__(self, service: ServiceConfig, address: ListenAddress,
                 sock: socket.socket, access: AccessState, processes: ProcessTable,
                 spec: SpawnSpec,
                 guard: Optional[RespawnGuard] = None) -> None:
        self.service = service
        self.address = address
        self.socket = sock
        self._access = access
        self._runtime = access.runtime
        self._reactor = access.runtime.reactor
        self._table = processes
        self._spec = spec
        self.guard = RespawnGuard() if guard is None else guard
        self.child: Optional[Child] = None
        self._timer: Optional[IDelayedCall] = None
        self._reading = False
        self._closed = False
        #: What the child was started for: accept-queue length or datagram.
        self._before: Any = None

    def reconfigure(self, service: ServiceConfig, spec: SpawnSpec) -> None:
        """
        New settings on reload, same socket: a running child keeps running
        (and is logged under the new settings when it exits); the next child
        starts with ``spec``.  The back-off state is kept.
        """
        self.service = service
        self._spec = spec

    # -- IReadDescriptor / IListeningPort ----------------------------------

    def fileno(self) -> int:
        return -1 if self._closed else self.socket.fileno()

    def logPrefix(self) -> str:
        return f"wait:{self.service.id}"

    def connectionLost(self, reason: Failure) -> None:
        self.stopListening()

    def startListening(self) -> None:
        """Poll the socket (it was bound when this port was made)."""
        self.resume()

    def stopListening(self) -> None:
        """Stop polling and close superd's copy; a running child keeps its own."""
        self._pause()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self._closed:
            self._closed = True
            self.socket.close()
            if self.address.unix is not None:
                unixsocket.release(self.address.host)  # only a file superd made

    def getHost(self) -> Any:
        if self.address.unix is not None:
            return UNIXAddress(self.address.host)
        host, port = self.socket.getsockname()[:2]
        kind: Literal["TCP", "UDP"] = "TCP" if self._is_stream else "UDP"
        if ":" in host:
            return IPv6Address(kind, host, port)
        return IPv4Address(kind, host, port)

    # -- polling -------------------------------------------------------------

    @property
    def backoff_until(self) -> Optional[float]:
        """When a pending respawn back-off ends (reactor time), or None."""
        timer = self._timer
        if timer is None or not timer.active():
            return None
        return float(timer.getTime())

    @property
    def _is_stream(self) -> bool:
        return self.service.socket_type is SocketType.STREAM

    def resume(self) -> None:
        """Poll again, unless closed, a child runs, or a back-off is pending."""
        self._timer = None
        if self._closed or self.child is not None or self._reading:
            return
        self.socket.setblocking(False)
        self._reading = True
        self._reactor.addReader(self)

    def _pause(self) -> None:
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)

    def doRead(self) -> None:
        if self._is_stream:
            self._pause()
            self._before = _accept_queue(self.socket)
            self._start(wait_stream_environment(self._spec.base_env), None)
            return
        first = _first_datagram(self.socket)
        if first is None:
            return
        peer = Peer.from_address(first[1])
        if not self._admit(peer):
            self._drop_one()
            return
        self._pause()
        self._before = first
        self._start(datagram_environment(self._spec.base_env, peer), peer)

    def _admit(self, peer: Peer) -> bool:
        from superd.access.factory import admit_datagram_source
        return bool(admit_datagram_source(self.service, peer, self._access))

    def _drop_one(self) -> None:
        try:
            self.socket.recvfrom(1, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass

    # -- the child -------------------------------------------------------------

    def _start(self, env: Any, peer: Optional[Peer]) -> None:
        fd = self.socket.fileno()
        os.set_blocking(fd, True)
        try:
            child = self._table.spawn(self._spec.request(env, fd),
                                      self.service.id, peer)
        except SpawnError as e:
            log_spawn_failure(self.service, e, peer)
            self._back_off(self.guard.failed())
            return
        self.child = child
        emit_start(self.service, child.pid, peer)
        child.on_exit(self._exited)

    def _exited(self, child: Child) -> None:
        status = child.status
        assert status is not None
        duration = self._reactor.seconds() - child.started
        served = self._closed or self._served(status)
        emit_exit(self.service, child.pid, status.code, status.signal, duration)
        self.child = None
        if self._closed:
            return
        self._back_off(self.guard.after_run(duration, served))

    def _served(self, status: ExitStatus) -> bool:
        """
        Did the child do its job?  Datagram: the first queued datagram is no
        longer the one it was started for.  Stream: the accept queue shrank,
        or it exited 0 -- the queue alone cannot tell a connection accepted
        from one that arrived since, so a clean exit is believed.
        """
        if self._is_stream:
            after = _accept_queue(self.socket)
            return after < 0 or after < self._before or status.code == 0
        return bool(_first_datagram(self.socket) != self._before)

    def _back_off(self, delay: float) -> None:
        if delay <= 0:
            self.resume()
            return
        _log.warn(
            "service {service_id}: server exited at once without serving;"
            " next start in {delay:.0f}s (failure {failures})",
            event=EV_RESPAWN_BACKOFF, service_id=self.service.id, delay=delay,
            failures=self.guard.failures)
        self._timer = self._reactor.callLater(delay, self.resume)


@implementer(IListener)
class WaitService(Service):
    """Binds one address of a ``wait = yes`` service at privileged start."""

    def __init__(self, service: ServiceConfig, address: ListenAddress,
                 access: AccessState, processes: ProcessTable, spec: SpawnSpec) -> None:
        self.service = service
        self.address = address
        self._access = access
        self._processes = processes
        self._spec = spec
        self.port: Optional[WaitPort] = None
        self._bound_port: Optional[int] = None

    @property
    def spec(self) -> SpawnSpec:
        """What every child of this service is started with."""
        return self._spec

    def _bind(self) -> None:
        if self.port is None:
            sock = bind_socket(self.address)
            self.port = WaitPort(self.service, self.address, sock,
                                 self._access, self._processes, self._spec)
            self._bound_port = emit_listening(self.address, self.port)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._bind()

    def startService(self) -> None:
        super().startService()
        self._bind()
        assert self.port is not None
        self.port.startListening()

    def stopService(self) -> None:
        super().stopService()
        self.close()

    # -- IListener ------------------------------------------------------------

    def bound_port(self) -> Optional[int]:
        return None if self.port is None else self._bound_port

    def status(self) -> ListenStatus:
        port = self.port
        if port is None:
            return ListenStatus(ListenState.CLOSED)
        if port.child is not None:
            return ListenStatus(ListenState.SUSPENDED, server_pid=port.child.pid)
        until = port.backoff_until
        if until is not None:
            return ListenStatus(ListenState.BACKING_OFF, until=until)
        return ListenStatus(ListenState.LISTENING)

    def listening_socket(self) -> Optional[socket.socket]:
        return None if self.port is None else self.port.socket

    def release(self) -> Tuple[Optional[IListeningPort], Any]:
        """A wait = yes socket belongs to its server: no other kind of
        listener can take it (a reload that changes ``wait`` rebinds)."""
        raise TypeError(f"the socket of {self!r} cannot serve another kind of listener")

    def adopt(self, predecessor: IListener) -> None:
        """The socket (and its running child) passes to the new settings; the
        back-off state is kept."""
        if not isinstance(predecessor, WaitService):
            raise TypeError(f"a WaitService cannot take the socket of {predecessor!r}")
        port, predecessor.port = predecessor.port, None
        self.port, self._bound_port = port, predecessor._bound_port
        if port is not None:
            port.reconfigure(self.service, self._spec)
            unixsocket.reapply_permissions(self.address)

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            emit_not_listening(self.address, self._bound_port)
            port.stopListening()


def wait_service(service: ServiceConfig, bind_host: str, access: AccessState,
                 processes: ProcessTable) -> WaitService:
    """The service for ``service``'s socket on ``bind_host`` (wait = yes)."""
    addresses = [a for a in listen_addresses(service, access.runtime.options.backlog)
                 if a.host == bind_host]
    if not addresses:
        raise ValueError(f"service {service.id} does not listen on {bind_host}")
    return WaitService(service, addresses[0], access, processes,
                       build_spec(service, processes))

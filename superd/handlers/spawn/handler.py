"""
``wait = no`` stream services run by an external server: each admitted
connection is handed to a new child, and the session lasts as long as the
child does (instances and per_source are released when it is reaped).
Ending the session early (a ban, a reload) stops the child's process group.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import Any, Dict, Optional, Tuple

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.config.model import ServiceConfig
from superd.core.interfaces import IStreamHandler
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.handlers.spawn.environ import stream_environment
from superd.handlers.spawn.handoff import (
    NotHandOffable,
    hand_off,
    pending_output,
    raw_tcp_transport,
    set_socket_options,
)
from superd.handlers.spawn.spec import SpawnSpec, build_spec
from superd.observe.events import (
    EV_SPAWN_FAILED,
    REASON_EXEC,
    emit_exit,
    emit_fail,
    emit_session_exit,
    emit_session_start,
)
from superd.proc.spawner import SpawnError
from superd.proc.table import Child, ProcessTable

__all__ = ["EXEC_FAILED_STATUS", "ExternalHandler", "HandOffProtocol",
           "log_spawn_failure"]

_log = Logger(namespace="superd.spawn")

#: The exit status a shell reports for a command it could not execute; the
#: EXIT line of a failed exec carries it (there was no real child to reap).
EXEC_FAILED_STATUS = 127

_LOCAL_CACHE = 64

#: Seconds a client gets to take superd's banners before the hand-off,
#: and how often that is checked.
DRAIN_TIMEOUT = 30.0
DRAIN_POLL = 0.01


def _handle(transport: Any) -> Optional[socket.socket]:
    """The socket under ``transport``, if it has one."""
    try:
        handle: socket.socket = transport.getHandle()
    except AttributeError:
        return None
    return handle


def log_spawn_failure(service: ServiceConfig, error: SpawnError,
                      peer: Any) -> None:
    """FAIL ``fork``/``exec`` with the reason, plus EXIT status 127 for exec."""
    _log.error(
        "service {service_id}: cannot start {server}: {detail}",
        event=EV_SPAWN_FAILED, service_id=service.id, server=service.server,
        reason=error.reason, errno=error.errno, detail=error.detail)
    emit_fail(service, error.reason, peer, detail=error.detail)
    if error.reason == REASON_EXEC:
        emit_exit(service, 0, EXEC_FAILED_STATUS, None, 0.0)


class HandOffProtocol(Protocol):
    """Hands its connection to a child as soon as it is made."""

    def __init__(self, handler: "ExternalHandler", session: Session) -> None:
        self._handler = handler
        self._session = session
        #: Set once the hand-off starts: from then on the child (or the
        #: failure to start it) ends the session, not the transport.
        self.child_owns_session = False

    def connectionMade(self) -> None:
        self._handler.serve(self._session, self.transport, self)

    def dataReceived(self, data: bytes) -> None:
        # Reading stops before the hand-off; bytes stay queued for the child.
        pass

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        # After a hand-off this only means superd dropped its copy; the
        # session ends when the child does.
        if not self.child_owns_session:
            self._session.end()


@implementer(IStreamHandler)
class ExternalHandler:
    """Serves each admitted connection of ``service`` with a new child."""

    def __init__(self, service: ServiceConfig, runtime: Runtime,
                 processes: ProcessTable) -> None:
        self.service = service
        self._runtime = runtime
        self._table = processes
        self.spec: SpawnSpec = build_spec(service, self._table)
        self._nodelay = "NODELAY" in service.flags
        self._keepalive = "KEEPALIVE" in service.flags
        self._locals: Dict[Tuple[str, int], Peer] = {}

    def protocol_for(self, session: Session) -> HandOffProtocol:
        """See ``IStreamHandler``."""
        return HandOffProtocol(self, session)

    def serve(self, session: Session, transport: Any,
              protocol: Optional[HandOffProtocol] = None) -> None:
        """
        Start the child for ``session`` on ``transport``'s socket -- once
        superd's own queued output (banners) has reached the socket, waited
        for without blocking: a client that does not read cannot stall the
        reactor, and is dropped after ``DRAIN_TIMEOUT`` seconds.
        """
        server = raw_tcp_transport(transport)
        if server is not None and pending_output(server):
            server.stopReading()  # the client's bytes stay queued for the child
            self._drain(session, transport, protocol,
                        self._runtime.seconds() + DRAIN_TIMEOUT)
            return
        self._start(session, transport, protocol)

    def _drain(self, session: Session, transport: Any,
               protocol: Optional[HandOffProtocol], deadline: float) -> None:
        if session.ended:
            return  # the client went away while we waited
        server = raw_tcp_transport(transport)
        if server is None or not pending_output(server):
            self._start(session, transport, protocol)
        elif self._runtime.seconds() >= deadline:
            _log.info("service {service_id}: client did not take the banner;"
                      " dropped", event=EV_SPAWN_FAILED,
                      service_id=self.service.id)
            transport.abortConnection()
            session.end()
        else:
            self._runtime.reactor.callLater(DRAIN_POLL, self._drain, session,
                                            transport, protocol, deadline)

    def serve_fd(self, session: Session, fd: int) -> None:
        """
        Start the child for ``session`` on a freshly accepted connection's
        descriptor (``superd.net.takingport.TakingPort``), which no socket object or
        transport ever wrapped: nothing was written or read on it, so there
        is nothing to flush or to leave queued, and it is blocking, as
        inetd servers expect.  The caller keeps ``fd`` and closes it.
        """
        try:
            local = session.local
            if local is None or self._nodelay or self._keepalive:
                local = self._prepare(fd) or local
            env = stream_environment(self.spec.base_env, session.peer, local, session.origin)
        except OSError as e:
            self._hand_off_failed(e)
            session.end()
            return
        # Off the reactor thread when the spawner can: the child's exec is
        # not waited for here (superd.proc.spawnpool).
        self._table.start(self.spec.request(env, fd), self.service.id, session.peer,
                          partial(self._started, session), partial(self._failed, session))

    def _failed(self, session: Session, error: SpawnError) -> None:
        log_spawn_failure(self.service, error, session.peer)
        session.end()

    def _prepare(self, fd: int) -> Optional[Peer]:
        """Set the socket options on ``fd``; its local address."""
        skt = socket.socket(fileno=fd)  # family and type from the kernel
        try:
            set_socket_options(skt, nodelay=self._nodelay, keepalive=self._keepalive)
            return self._local_address(skt)
        finally:
            skt.detach()  # the descriptor stays the caller's

    def _start(self, session: Session, transport: Any,
               protocol: Optional[HandOffProtocol]) -> None:
        if protocol is not None:
            protocol.child_owns_session = True
        local = session.local or self._local_address(_handle(transport))
        env = stream_environment(self.spec.base_env, session.peer, local, session.origin)
        child: Optional[Child] = None
        try:
            child = hand_off(
                transport,
                lambda fd: self._table.spawn(self.spec.request(env, fd),
                                             self.service.id, session.peer),
                nodelay=self._nodelay, keepalive=self._keepalive)
        except SpawnError as e:
            log_spawn_failure(self.service, e, session.peer)
        except NotHandOffable as e:
            transport.loseConnection()
            self._hand_off_failed(e)
        except OSError as e:
            self._hand_off_failed(e)
        self._started(session, child)

    def _hand_off_failed(self, error: Exception) -> None:
        _log.error("service {service_id}: hand-off failed: {error}",
                   event=EV_SPAWN_FAILED, service_id=self.service.id,
                   error=str(error))

    def _started(self, session: Session, child: Optional[Child]) -> None:
        if child is None:
            session.end()
            return
        session.pid = child.pid
        session.serve_with(partial(self._table.stop, (child,), self._runtime.options.grace))
        emit_session_start(self.service, child.pid, session.peer)
        child.on_exit(partial(self._exited, session))

    def _local_address(self, skt: Optional[socket.socket]) -> Optional[Peer]:
        # A service listens on few addresses: canonicalise each once (the
        # ipaddress parse costs more than the rest of building the env).
        try:
            name = skt.getsockname()[:2]  # type: ignore[union-attr]
        except (AttributeError, OSError):
            return None  # no socket (a test transport), or already closed
        local = self._locals.get(name)
        if local is None:
            local = Peer.from_address(name)
            if len(self._locals) < _LOCAL_CACHE:
                self._locals[name] = local
        return local

    def _exited(self, session: Session, child: Child) -> None:
        status = child.status
        assert status is not None
        emit_session_exit(self.service, child.pid, status.code, status.signal,
                          self._runtime.reactor.seconds() - child.started,
                          session.end_reason)
        session.end()

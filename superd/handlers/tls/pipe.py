"""
External servers behind superd's TLS: the child on a socket pair.

A TLS connection cannot be handed to a child (the descriptor carries the
encrypted stream, and the TLS state lives in superd): the child gets one
end of a ``socketpair`` as fds 0, 1 and 2 -- to it, a connected stream
exactly like a handed-off socket -- and superd relays
between the decrypted stream and the other end.  The relay is
``superd.handlers.redirect.RelayProtocol`` with a spawned child as its "upstream":
each transport is the other's streaming producer, so a slow client stops
superd reading the child and a slow child stops it reading the client
(never the ``Process`` object as a producer: it has no ``stopProducing``).

Half-close: the client's close_notify or EOF closes superd's end, so the
child reads EOF on stdin; when the child closes its output (or exits),
superd sends close_notify and closes.  The child is spawned only once the
handshake has succeeded (``TLSServerProtocol`` connects this protocol
then), so a failed handshake never costs a process.  START and EXIT are the
child's, with its pid; the TLS facts go into its environment
(``SUPERD_TLS_VERSION``, ``SUPERD_TLS_CIPHER``, ``SUPERD_TLS_CLIENT_SUBJECT``,
``SUPERD_TLS_CLIENT_NAMES``).

The session is the child's: it counts toward ``instances`` and
``per_source`` until the child is reaped, not until the client leaves.  A
child whose client is gone gets its pending input and then EOF; one that
neither reads it nor exits would hold superd's end of the pair (and its
session) forever -- ``/usr/bin/yes`` blocks writing to a relay that no
longer reads, ``sleep`` ignores EOF -- so once the client has been gone for
``--grace`` seconds superd closes its end at once and stops the child
(SIGTERM to its process group, SIGKILL after another ``--grace``).
"""

from __future__ import annotations

import socket
from typing import Any, Dict, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.config.model import ServiceConfig
from superd.core.interfaces import IStreamHandler
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.handlers.redirect import RelayProtocol
from superd.handlers.spawn.spec import build_spec
from superd.handlers.tls.protocol import peer_facts
from superd.observe import events
from superd.proc.table import ProcessTable

__all__ = ["ChildBridge", "PipeHandler"]

_log = Logger(namespace="superd.spawn")


@implementer(IStreamClientEndpoint)
class _SpawnedChild:
    """An endpoint whose "connect" starts the child on a socket pair."""

    def __init__(self, handler: "PipeHandler", bridge: "ChildBridge") -> None:
        self.handler = handler
        self.bridge = bridge

    def connect(self, factory: IProtocolFactory) -> "Deferred[Any]":
        from superd.proc.spawner import SpawnError

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child = self.handler.spawn(self.bridge, theirs.fileno())
        except (SpawnError, OSError) as e:
            ours.close()
            return fail(Failure(e))
        finally:
            theirs.close()  # the child has its copy
        self.bridge.child_started(child)
        try:
            ours.setblocking(False)
            # Twisted annotates a ServerFactory; any IProtocolFactory works.
            self.handler.runtime.reactor.adoptStreamConnection(
                ours.fileno(), socket.AF_UNIX, factory)  # type: ignore[arg-type]
        finally:
            ours.close()  # adoptStreamConnection keeps its own duplicate
        return succeed(None)


class ChildBridge(RelayProtocol):
    """Relays one TLS session to the child serving it."""

    logs_session = False
    #: The TLS layer leaves the session to the child's exit (see the module).
    session_outlives_connection = True

    def __init__(self, handler: "PipeHandler", session: Session) -> None:
        self.child: Any = None
        self.handler = handler
        #: Stops a child that outlives its client by --grace.
        self._abandoned: Optional[IDelayedCall] = None
        super().__init__(handler.service, handler.runtime, session, _SpawnedChild(handler, self))

    def tls_environment(self) -> Dict[str, str]:
        """What the finished handshake tells the child."""
        handle = getattr(self.transport, "getHandle", None)
        try:
            return peer_facts(handle()) if handle is not None else {}
        except Exception:
            return {}

    def child_started(self, child: Any) -> None:
        """The child runs: log START with its pid; its exit ends the session."""
        self.child = child
        self.session.pid = child.pid
        self.session.serve_with(self._terminate)
        events.emit_session_start(self.service, child.pid, self.session.peer)
        child.on_exit(self.handler.exited_callback(self.session))
        child.on_exit(self._child_reaped)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        child = self.child
        if child is not None and child.status is None and self._abandoned is None:
            self._abandoned = self.runtime.reactor.callLater(
                self.handler.grace, self._stop_abandoned)

    def _child_reaped(self, child: Any) -> None:
        if self._abandoned is not None and self._abandoned.active():
            self._abandoned.cancel()
        self._abandoned = None

    def _stop_abandoned(self) -> None:
        """The client left ``--grace`` seconds ago and the child still runs."""
        self._abandoned = None
        child = self.child
        if child is None or child.status is not None:
            return
        _log.info("service {service_id}: child {pid} still runs {grace}s after its client"
                  " left; stopping it", event=events.EV_CHILD_ABANDONED,
                  service_id=self.service.id, pid=child.pid, grace=self.handler.grace)
        if self.upstream is not None and not self.upstream_gone:
            # Input it never took is dropped: superd's end closes now.
            self.upstream.transport.abortConnection()  # type: ignore[union-attr]
        self.handler.processes.stop([child], self.handler.grace)

    def _terminate(self) -> None:
        """End the session early: stop the child and cut the client off."""
        self.handler.processes.stop((self.child,), self.runtime.options.grace)
        if not self.client_gone:
            self.transport.abortConnection()

    def log_connect_failure(self, failure: Failure) -> None:
        from superd.handlers.spawn.handler import log_spawn_failure
        from superd.proc.spawner import SpawnError

        if isinstance(failure.value, SpawnError):
            log_spawn_failure(self.service, failure.value, self.session.peer)
        else:
            events.emit_fail(self.service, events.REASON_FORK, self.session.peer,
                             str(failure.value))

    def finished(self) -> None:
        # The child's exit logs EXIT and ends the session; a child that never
        # started leaves that to us.
        if self.child is None:
            self.session.end()


@implementer(IStreamHandler)
class PipeHandler:
    """Serves each (TLS) session of an external server with a child on a socket pair."""

    def __init__(self, service: ServiceConfig, runtime: Runtime,
                 processes: ProcessTable) -> None:
        self.service = service
        self.runtime = runtime
        self.processes = processes
        self.spec = build_spec(service, processes)
        #: Seconds an abandoned child gets, and then between SIGTERM and SIGKILL.
        self.grace = runtime.options.grace

    def protocol_for(self, session: Session) -> ChildBridge:
        """The bridge for ``session``; the child starts when it is connected."""
        return ChildBridge(self, session)

    def spawn(self, bridge: ChildBridge, fd: int) -> Any:
        """Start the child on ``fd``; raises ``SpawnError``."""
        from superd.handlers.spawn.environ import stream_environment

        local = bridge.session.local or _local(bridge.transport)
        env = dict(stream_environment(self.spec.base_env, bridge.session.peer, local,
                                      bridge.session.origin))
        env.update(bridge.tls_environment())
        return self.processes.spawn(self.spec.request(env, fd), self.service.id,
                                    bridge.session.peer)

    def exited_callback(self, session: Session) -> Any:
        """What to do when the child of ``session`` is reaped: EXIT, end the session."""
        def exited(child: Any) -> None:
            status = child.status
            events.emit_session_exit(self.service, child.pid, status.code, status.signal,
                                     self.runtime.seconds() - child.started,
                                     session.end_reason)
            session.end()
        return exited

    def __repr__(self) -> str:
        return f"<PipeHandler {self.service.id} {self.spec.executable}>"


def _local(transport: Any) -> Optional[Peer]:
    try:
        return Peer.from_address(transport.getHost())
    except Exception:
        return None

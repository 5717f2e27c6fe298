"""
What every in-process stream builtin shares: the session's life, the START
(and EXIT) log lines, and a close that cannot hang.

A builtin protocol is built for one admitted ``Session``.  It logs START when
the connection is served (pid 0: served in-process), ends the session in
``connectionLost`` whatever the cause (logging EXIT with the reason when
superd ended it: a ban, a reload), and closes with ``close_gracefully``:
flush what is buffered, then FIN -- but abort if a peer that does not read
keeps the buffer full for longer than ``LINGER_TIMEOUT`` seconds, so a
silent client can never pin a descriptor.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.config.model import ServiceConfig
from superd.core.interfaces import IStreamHandler
from superd.core.runtime import Runtime
from superd.core.session import Session
from superd.net.connection import close_if_flushed
from superd.observe.events import emit_served_exit, emit_served_start

__all__ = ["LINGER_TIMEOUT", "BuiltinProtocol", "BuiltinStreamHandler"]

#: Seconds a closing connection may wait for its peer to read what is still
#: buffered before it is aborted (RST).  Generous: a slow but live reader on
#: a bad link finishes well within it; a peer that never reads does not.
LINGER_TIMEOUT: float = 30.0

#: ``log_on_success`` flags that make xinetd write an EXIT line.
_EXIT_FLAGS = frozenset({"EXIT", "DURATION"})


class BuiltinProtocol(Protocol):
    """Base of the stream builtins: one admitted session of one service."""

    #: Log EXIT when the connection ends, if ``log_on_success`` has EXIT or
    #: DURATION.  True for the builtins xinetd forks for (echo, discard,
    #: chargen), whose log readers expect EXIT with a duration; xinetd logs
    #: no EXIT for daytime and time.
    logs_exit: bool = False

    # Any, not Protocol's ITransport: builtins also use the IConsumer,
    # IPushProducer and ITCPTransport methods every stream transport has.
    transport: Any = None

    def __init__(self, service: ServiceConfig, runtime: Runtime,
                 session: Session) -> None:
        self.service = service
        self.runtime = runtime
        self.session = session
        self._linger: Any = None  # IDelayedCall

    @property
    def clock(self) -> Any:
        """The injected clock (the runtime's reactor): an ``IReactorTime``."""
        return self.runtime.reactor

    def connectionMade(self) -> None:
        emit_served_start(self.service, self.session.peer)
        self.serve()

    def serve(self) -> None:
        """Start serving the connection (called once, from ``connectionMade``)."""

    def dataReceived(self, data: bytes) -> None:
        # Input that a builtin does not use is dropped, never stored.
        pass

    def close_gracefully(self) -> None:
        """Flush, then FIN; abort (RST) if the peer has not read it in time."""
        if self._linger is not None:
            return
        if close_if_flushed(self.transport):
            return  # nothing was left to send: closed already, no linger
        self.transport.loseConnection()
        self._linger = self.clock.callLater(LINGER_TIMEOUT, self._abort)

    def _abort(self) -> None:
        self._linger = None
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        self.stop()
        session = self.session
        if (self._logs_exit() or session.end_reason is not None) and not session.ended:
            duration = self.runtime.seconds() - session.started
            emit_served_exit(self.service, max(0.0, duration), session.end_reason)
        session.end()

    def _logs_exit(self) -> bool:
        # Only when the service asks for an EXIT line: one log event per
        # connection is a measurable share of a builtin's cost.
        return self.logs_exit and not _EXIT_FLAGS.isdisjoint(self.service.log_on_success)

    def stop(self) -> None:
        """Release what the protocol holds (timers); called once, on connection loss."""


#: Builds the protocol for one admitted session.
ProtocolFactory = Callable[[ServiceConfig, Runtime, Session], BuiltinProtocol]


@implementer(IStreamHandler)
class BuiltinStreamHandler:
    """The ``IStreamHandler`` of one stream builtin service."""

    def __init__(self, service: ServiceConfig, runtime: Runtime,
                 factory: ProtocolFactory) -> None:
        self.service = service
        self.runtime = runtime
        self._factory = factory

    def protocol_for(self, session: Session) -> Any:
        """A fresh protocol serving ``session``; it ends the session when closed."""
        return self._factory(self.service, self.runtime, session)

    def __repr__(self) -> str:
        return f"<BuiltinStreamHandler {self.service.id}>"

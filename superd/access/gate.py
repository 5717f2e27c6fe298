"""
The gate: a connection held paused while its admission cannot be decided at
once.

``AccessControlledFactory.buildProtocol`` returns a ``Gate`` when a decision
must wait (a host-name lookup), a banner must be written first or the
service logs USERID.  The gate pauses the transport (not a byte is read),
waits, and then either closes or connects the handler's protocol to the
same transport.

USERID (RFC 1413, ``superd.access.ident``) runs on the reactor, never blocking
other connections: an admitted client is served at once while its lookup
runs; an IDONLY client waits, paused and counted, for the answer and is
closed without one; a refused client's connection stays open until its
lookup ends (identd can only name a live connection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from typing import Protocol as Interface

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from superd.access.banners import Banners, send_now
from superd.access.decision import Decision, MaybeDeferred
from superd.access.userid import UseridLookups
from superd.core import twistedprivate
from superd.core.origin import ProxyOrigin
from superd.core.session import Peer, Session
from superd.observe import events

if TYPE_CHECKING:
    from superd.access import ident

__all__ = ["Gate", "GateOwner"]

_log = Logger(namespace="superd.access")


class GateOwner(Interface):
    """What a gate asks of the access-controlled factory that made it."""

    banners: Banners
    userid: UseridLookups | None

    def decide(self, peer: Peer) -> MaybeDeferred:
        """The policies' decision for ``peer`` (perhaps still pending)."""

    def refuse(self, peer: Peer, decision: Decision) -> Protocol | None:
        """Count and log a refusal; the protocol that says so, if any."""

    def refused_unidentified(self) -> None:
        """Count a peer refused for want of a USERID answer (IDONLY)."""

    def open_session(self, peer: Peer, local: Peer | None,
                     origin: ProxyOrigin | None = None) -> Session:
        """Admit ``peer``: its session, counted and logged."""

    def admit(self, peer: Peer, local: Peer | None,
              origin: ProxyOrigin | None = None) -> Protocol | None:
        """Admit ``peer`` and return the protocol serving it."""

    def serve(self, session: Session, peer: Peer) -> Protocol | None:
        """The protocol serving an already admitted ``session``."""


class Gate(Protocol):
    """Holds a paused connection while banners go out and checks finish."""

    def __init__(self, factory: GateOwner, peer: Peer,
                 pending: MaybeDeferred | None, origin: ProxyOrigin | None = None) -> None:
        self.gate_factory = factory
        self.peer = peer
        #: What a PROXY header said, for the session (``peer`` is its client).
        self.origin = origin
        self._pending = pending
        self._lost = False
        self._queued = False
        self._lookup: Deferred[ident.IdentResult] | None = None
        self._session: Session | None = None  # IDONLY: counted, not served
        self._early = b""
        self._served: Protocol | None = None

    def _send(self, data: bytes | None) -> None:
        if not data:
            return
        if self._queued:
            self.transport.write(data)  # type: ignore[union-attr]
        else:
            self._queued = not send_now(self.transport, data)

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.pauseProducing()
        factory = self.gate_factory
        self._send(factory.banners.banner)
        outcome = self._pending
        if outcome is None:
            outcome = factory.decide(self.peer)
        if isinstance(outcome, Decision):
            self._decided(outcome)
        else:
            outcome.addCallback(self._decided).addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        _log.failure("access decision failed", failure, event=events.EV_POLICY_ERROR)
        if not self._lost:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _local(self) -> Peer:
        return Peer.from_address(self.transport.getHost())  # type: ignore[union-attr]

    def _decided(self, decision: Decision) -> None:
        factory = self.gate_factory
        if not decision.allowed:
            refusal = factory.refuse(self.peer, decision)
            self._refused(refusal, factory.userid)
            return
        if self._lost:
            return
        userid = factory.userid
        if userid is not None and userid.first:
            self._session = factory.open_session(self.peer, self._local(), self.origin)
            self._session.serve_with(self._abort)
            self._hold(userid.lookup(self._local(), self.peer), self._identified)
            return
        local = self._local()
        protocol = factory.admit(self.peer, local, self.origin)
        if protocol is not None:
            if userid is not None and userid.on_admit:
                userid.beside(local, self.peer)
            self._send(factory.banners.success)
        self._switch(protocol)

    def _refused(self, refusal: Protocol | None, userid: UseridLookups | None) -> None:
        """Close (or send banner_fail), after the USERID lookup if it has one."""
        lookup = None
        if userid is not None and userid.on_refuse and not self._lost:
            lookup = userid.for_refused(self._local(), self.peer)
        if lookup is None:
            self._switch(refusal)
        else:
            self._hold(lookup, lambda _: self._switch(refusal))

    def _hold(self, lookup: Deferred[ident.IdentResult],
              then: Callable[[ident.IdentResult], None]) -> None:
        """Keep the connection paused until its ident lookup ends."""
        self._lookup = lookup
        lookup.addCallback(then).addErrback(self._lookup_ended)

    def _lookup_ended(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            self._failed(failure)

    def _identified(self, result: ident.IdentResult) -> None:
        """IDONLY: serve a client its identd named; close the others."""
        session, self._session, self._lookup = self._session, None, None
        if session is None:
            return
        if not result.ok:
            session.end()  # the NOID line is logged by the lookup
            self.gate_factory.refused_unidentified()
            self._switch(None)
            return
        protocol = self.gate_factory.serve(session, self.peer)
        if protocol is not None:
            self._send(self.gate_factory.banners.success)
        self._switch(protocol)

    def _abort(self) -> None:
        """End the counted session of a client waiting for its ident answer."""
        if not self._lost:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def _switch(self, protocol: Protocol | None) -> None:
        """Give the connection to ``protocol``, or close it."""
        transport: Any = self.transport
        if self._lost:
            return
        if protocol is None:
            transport.loseConnection()
            return
        # Resume before handing over: the new protocol may pause or hand the
        # socket off in connectionMade, and nothing is read until we return.
        transport.resumeProducing()
        self._served = protocol
        twistedprivate.switch_protocol(transport, protocol)
        protocol.makeConnection(transport)
        early, self._early = self._early, b""
        if early:
            protocol.dataReceived(early)

    def dataReceived(self, data: bytes) -> None:
        """
        Bytes for the protocol the gate hands over to: the paused transport
        sends none, but tcpmux passes those after its request line.
        """
        if self._served is not None:
            self._served.dataReceived(data)
        else:
            self._early += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._lost = True
        lookup, self._lookup = self._lookup, None
        if lookup is not None:
            lookup.cancel()  # closes the ident connection
        session, self._session = self._session, None
        if session is not None:
            session.end()

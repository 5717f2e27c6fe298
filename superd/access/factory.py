"""
The access-controlled factories: the one seam every connection and datagram
passes through before anything serves it.

``AccessControlledFactory`` is a plain ``ServerFactory`` (no wrapping
factories, twisted-notes section 4): ``buildProtocol`` runs the service's
policies and returns ``None`` to refuse, so Twisted closes the socket
without reading from it; with ``banner_fail`` it returns a tiny protocol
that sends the banner and closes.  An admitted peer becomes a ``Session``,
counted until ``session.end()``, and the handler builds its protocol.

When a decision must wait (a host-name lookup), a banner must be written
first or the service logs USERID, ``buildProtocol`` returns a ``_Gate``: it
pauses the transport (not a byte is read), waits, and then either closes or
connects the handler's protocol to the same transport.  Without banners,
names or USERID no gate exists, so the common path costs one function call
per policy.

USERID (RFC 1413, ``superd.ident``) runs on the reactor, never blocking
other connections: an admitted client is served at once while its lookup
runs; an IDONLY client waits, paused and counted, for the answer and is
closed without one; a refused client's connection stays open until its
lookup ends (identd can only name a live connection).

FAIL lines are logged here (``events.emit_fail``); START is the handler's.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import DatagramProtocol, Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from superd import events, ident
from superd.access.banners import Banners, FailBannerProtocol, send_now
from superd.access.decision import Decision, MaybeDeferred, deny
from superd.access.pipeline import BANNED, policies_for, run_policies
from superd.access.refusals import RefusalLog
from superd.access.setup import AccessState, state_of
from superd.access.userid import UseridLookups
from superd.config.model import ServiceConfig
from superd.counters import ServiceCounters, service_counters
from superd.runtime import Runtime
from superd.session import Peer, Session

__all__ = [
    "AccessControlledDatagramProtocol",
    "AccessControlledFactory",
    "admit_datagram_source",
    "trip_sensor",
]

_log = Logger(namespace="superd.access")
_SENSOR = deny(events.REASON_ADDRESS)


def trip_sensor(service: ServiceConfig, peer: Peer, runtime: Runtime,
                state: AccessState | None = None) -> None:
    """A peer touched a SENSOR: ban it everywhere for ``deny_time``."""
    bans = runtime.bans
    if bans is None or service.deny_time == 0:
        return
    drop = (state or state_of(runtime)).kernel_drop
    if drop is not None and bans.is_banned(peer.host):
        drop.refused_banned(peer.host, runtime.seconds())
    bans.ban(peer.host, service.deny_time, service.id)


def _record_refusal(state: AccessState, counts: ServiceCounters,
                    refusals: RefusalLog, service: ServiceConfig, peer: Peer,
                    decision: Decision, now: float,
                    key: Hashable | None = None) -> None:
    """Count a refusal for ``superd status``, tell the kernel-drop watch
    about a banned source, and log the FAIL line (rate-limited by key)."""
    counts.refuse(decision.reason)
    if decision is BANNED and state.kernel_drop is not None:
        state.kernel_drop.refused_banned(peer.host, now)
    refusals.refused(service, peer, decision, now, key)


def _peer(addr: IAddress | None) -> Peer:
    """The peer of a connection; IPv4 addresses are canonical already."""
    if type(addr) is IPv4Address:
        return Peer(addr.host, addr.port)
    return Peer.from_address(addr)


def _peer_of_datagram(addr: Any) -> Peer:
    host = addr[0]
    if ":" not in host:
        return Peer(host, addr[1])
    return Peer.from_address(addr)


class AccessControlledFactory(ServerFactory):
    """Admits or refuses each stream connection of one service."""

    noisy = False  # no "Starting factory" line per service at start, stop and reload

    noisy = False  # no "Starting factory" line per service at start, stop and reload

    def __init__(self, service: ServiceConfig, handler: Any,
                 runtime: Runtime) -> None:
        self.service = service
        self.handler = handler
        self.runtime = runtime
        self.policies = policies_for(service, runtime, sessions=True)
        self.banners = Banners.load(service)
        self.userid = UseridLookups.of(service, runtime)
        self._gated = bool(self.banners.banner or self.banners.success
                           or self.userid is not None)
        state = state_of(runtime)
        self._state = state
        self._counter = state.counter
        self._refusals = state.stream_refusals
        self._counts = service_counters(runtime, service.id)  # superd status

    def decide(self, peer: Peer) -> MaybeDeferred:
        """Run the service's policies for ``peer``."""
        return run_policies(self.policies, peer, self.runtime.seconds)

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        peer = _peer(addr)
        if self.service.is_sensor:
            trip_sensor(self.service, peer, self.runtime, self._state)
            return self.refuse(peer, _SENSOR)
        if self._gated:
            return _Gate(self, peer, None)
        outcome = self.decide(peer)
        if not isinstance(outcome, Decision):
            return _Gate(self, peer, outcome)
        if outcome.allowed:
            return self.admit(peer, None)
        return self.refuse(peer, outcome)

    def refuse(self, peer: Peer, decision: Decision) -> Protocol | None:
        """Log the refusal; the protocol to send ``banner_fail``, or None."""
        _record_refusal(self._state, self._counts, self._refusals, self.service,
                        peer, decision, self.runtime.seconds())
        if self.banners.fail is None:
            return None
        return FailBannerProtocol(self.banners.fail, self.runtime.reactor)

    def refused_unidentified(self) -> None:
        """Count an IDONLY client refused for want of an ident answer."""
        self._counts.refuse(events.REASON_NOID)

    def open_session(self, peer: Peer, local: Peer | None) -> Session:
        """A session for ``peer``, counted (instances, per_source) at once."""
        session = Session(self.service.id, peer, local, self.runtime.seconds())
        self._counter.acquire(session)
        return session

    def admit(self, peer: Peer, local: Peer | None) -> Protocol | None:
        """Count a session for ``peer`` and let the handler serve it."""
        return self.serve(self.open_session(peer, local), peer)

    def serve(self, session: Session, peer: Peer) -> Protocol | None:
        """The handler's protocol for ``peer``'s counted session, or None."""
        if self.handler is None:
            session.end()
            events.emit_fail(self.service, events.REASON_FORK, peer,
                             "no handler")
            return None
        self._counts.accept()
        try:
            protocol: Protocol | None = self.handler.protocol_for(session)
        except Exception:
            _log.failure("handler of {service_id} failed for {peer_host}",
                         event="handler_error", service_id=self.service.id,
                         peer_host=peer.host)
            protocol = None
        if protocol is None:
            session.end()
            events.emit_fail(self.service, events.REASON_FORK, peer,
                             "handler refused")
        return protocol


class _Gate(Protocol):
    """Holds a paused connection while banners go out and checks finish."""

    def __init__(self, factory: AccessControlledFactory, peer: Peer,
                 pending: MaybeDeferred | None) -> None:
        self.gate_factory = factory
        self.peer = peer
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
        _log.failure("access decision failed", failure, event="policy_error")
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
            self._session = factory.open_session(self.peer, self._local())
            self._hold(userid.lookup(self._local(), self.peer), self._identified)
            return
        local = self._local()
        protocol = factory.admit(self.peer, local)
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
        transport.protocol = self._served = protocol
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


class AccessControlledDatagramProtocol(DatagramProtocol):
    """Admits or drops each datagram of one in-process dgram service."""

    noisy = False  # no "Starting protocol" line per service at start, stop and reload

    noisy = False  # no "Starting protocol" line per service at start, stop and reload

    def __init__(self, service: ServiceConfig, handler: Any,
                 runtime: Runtime) -> None:
        self.service = service
        self.handler = handler
        self.runtime = runtime
        self.policies = policies_for(service, runtime, sessions=False)
        self._state = state_of(runtime)
        self._refusals = self._state.dgram_refusals
        self._waiting = 0
        self._counts = service_counters(runtime, service.id)  # superd status

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        peer = _peer_of_datagram(addr)
        if self.service.is_sensor:
            trip_sensor(self.service, peer, self.runtime, self._state)
            self._refused(peer, _SENSOR)
            return
        outcome = run_policies(self.policies, peer, self.runtime.seconds)
        if isinstance(outcome, Decision):
            self._decided(outcome, datagram, peer, addr)
        elif self._waiting < MAX_WAITING_DATAGRAMS:
            self._waiting += 1
            outcome.addCallback(self._late, datagram, peer, addr)

    def _late(self, decision: Decision, datagram: bytes, peer: Peer,
              addr: Any) -> None:
        self._waiting -= 1
        self._decided(decision, datagram, peer, addr)

    def _decided(self, decision: Decision, datagram: bytes, peer: Peer,
                 addr: Any) -> None:
        if not decision.allowed:
            self._refused(peer, decision)
            return
        self._counts.accept()
        if self.handler is None:
            return
        try:
            self.handler.handle_datagram(datagram, peer, self._replier(addr))
        except Exception:
            _log.failure("datagram handler of {service_id} failed",
                         event="handler_error", service_id=self.service.id)

    def _refused(self, peer: Peer, decision: Decision) -> None:
        key = (self.service.id, peer.host, peer.port, decision.reason)
        _record_refusal(self._state, self._counts, self._refusals, self.service,
                        peer, decision, self.runtime.seconds(), key)

    def _replier(self, addr: Any) -> Callable[[bytes], None]:
        def reply(data: bytes) -> None:
            transport: Any = self.transport
            if transport is not None:
                transport.write(data, addr)
        return reply


#: Datagrams held while their source's names are looked up, per service.
MAX_WAITING_DATAGRAMS = 256


def admit_datagram_source(service: ServiceConfig, peer: Peer,
                          runtime: Runtime) -> bool:
    """
    Full checks for a datagram source of a ``wait = yes`` dgram service
    (FAIL logged once per source address and port a minute, as for every
    datagram; sensors trip).  This answer cannot wait: if it depends on
    host names not yet cached, the source is refused this time while the
    lookup fills the cache for its next datagram.
    """
    state = state_of(runtime)
    if service.is_sensor:
        trip_sensor(service, peer, runtime, state)
        outcome: MaybeDeferred = _SENSOR
    else:
        policies = policies_for(service, runtime, sessions=False)
        outcome = run_policies(policies, peer, runtime.seconds)
    if not isinstance(outcome, Decision):
        outcome.addErrback(lambda _: None)
        outcome = deny(events.REASON_ADDRESS, "host name lookup pending")
    counts = service_counters(runtime, service.id)  # superd status
    if outcome.allowed:
        counts.accept()
        return True
    key = (service.id, peer.host, peer.port, outcome.reason)
    _record_refusal(state, counts, state.dgram_refusals, service, peer, outcome,
                    runtime.seconds(), key)
    return False

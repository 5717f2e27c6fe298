"""
The access-controlled factories: the one seam every connection and datagram
passes through before anything serves it.

``AccessControlledFactory`` is a plain ``ServerFactory`` (no wrapping
factory: a ``ProtocolWrapper`` per connection costs a call per event and
hides the served protocol's interfaces): ``buildProtocol`` runs the service's
policies and returns ``None`` to refuse, so Twisted closes the socket
without reading from it; with ``banner_fail`` it returns a tiny protocol
that sends the banner and closes.  An admitted peer becomes a ``Session``,
counted until ``session.end()``, and the handler builds its protocol; until
a handler says otherwise (a child serves it), ending the session early means
aborting that protocol's connection.

When a decision must wait (a host-name lookup), a banner must be written
first or the service logs USERID, ``buildProtocol`` returns a ``Gate``
(``superd.access.gate``) that holds the connection paused until then.
Without banners, names or USERID no gate exists, so the common path costs
one function call per policy.

FAIL lines are logged here (``events.emit_fail``); START is the handler's.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import DatagramProtocol, Protocol, ServerFactory
from twisted.logger import Logger

from superd.access.banners import Banners, FailBannerProtocol
from superd.access.decision import ALLOW, Decision, MaybeDeferred, Policy, deny
from superd.access.gate import Gate
from superd.access.pipeline import BANNED, batch_policies, policies_for, run_policies
from superd.access.prefixes import source_key
from superd.access.refusals import RefusalLog
from superd.access.state import AccessState
from superd.access.userid import UseridLookups
from superd.config.model import ServiceConfig
from superd.core.origin import ProxyOrigin
from superd.core.session import Peer, Session
from superd.net.takingport import TAKEN, Taken
from superd.observe import events
from superd.observe.counters import ServiceCounters

__all__ = [
    "ANSWER_BATCH",
    "AccessControlledDatagramProtocol",
    "AccessControlledFactory",
    "admit_datagram_source",
    "trip_sensor",
]

_log = Logger(namespace="superd.access")

#: Connections a port accepts before a service answered in one write
#: decides them (``batch_size``): enough that the look at the hosts files
#: and the ban list made once per batch costs next to nothing per
#: connection, few enough that the descriptors held meanwhile do not
#: matter.
ANSWER_BATCH = 16

#: ``take_connection(fd, address, local)`` (see ``superd.net.takingport``).
TakeConnection = Callable[[int, Any, "Peer | None"], "Protocol | Taken | None"]
_SENSOR = deny(events.REASON_ADDRESS)


def trip_sensor(service: ServiceConfig, peer: Peer, access: AccessState) -> None:
    """A peer touched a SENSOR: ban it (or its IPv6 network, under
    ``v6_source_prefix``) everywhere for ``deny_time``."""
    if service.deny_time == 0:
        return
    bans, drop = access.bans, access.kernel_drop
    if drop is not None:
        banned = bans.covering(peer.host)
        if banned is not None:
            drop.refused_banned(banned, access.runtime.seconds())
    bans.ban(source_key(peer.host, service.v6_source_prefix), service.deny_time, service.id)


def _record_refusal(state: AccessState, counts: ServiceCounters,
                    refusals: RefusalLog, service: ServiceConfig, peer: Peer,
                    decision: Decision, now: float,
                    key: Hashable | None = None) -> None:
    """Count a refusal for ``superd status``, tell the kernel-drop watch
    about a banned source, and log the FAIL line (rate-limited by key)."""
    counts.refuse(decision.reason)
    if decision is BANNED and state.kernel_drop is not None:
        # The ban's own key: a network ban is dropped as one network.
        banned = state.bans.covering(peer.host) or peer.host
        state.kernel_drop.refused_banned(banned, now)
    refusals.refused(service, peer, decision, now, key)


def _aborter(protocol: Protocol) -> Callable[[], None]:
    """Ends a session served in-process: abort the protocol's connection (its
    ``connectionLost`` then ends the session and logs EXIT)."""
    def abort() -> None:
        transport: Any = protocol.transport
        if transport is not None:
            transport.abortConnection()
    return abort


def _peer(addr: IAddress | None) -> Peer:
    """The peer of a connection; IPv4 addresses are canonical already."""
    if type(addr) is IPv4Address:
        return Peer(addr.host, addr.port)
    return Peer.from_address(addr)


def _peer_of_tuple(addr: Any) -> Peer:
    """The peer of an address tuple from ``accept()`` or ``recvfrom()``, or
    the ``UnixPeer`` a UNIX port passes instead."""
    if isinstance(addr, Peer):
        return addr
    host = addr[0]
    if ":" not in host:
        return Peer(host, addr[1])
    return Peer.from_address(addr)


class AccessControlledFactory(ServerFactory):
    """Admits or refuses each stream connection of one service."""

    noisy = False  # no "Starting factory" line per service at start, stop and reload

    def __init__(self, service: ServiceConfig, handler: Any,
                 access: AccessState) -> None:
        self.service = service
        self.handler = handler
        self.access = access
        runtime = self.runtime = access.runtime
        self.policies = policies_for(service, access, sessions=True)
        self.banners = Banners.load(service)
        self.userid = UseridLookups.of(service, runtime)
        self._gated = bool(self.banners.banner or self.banners.success
                           or self.userid is not None)
        #: For ``superd.net.takingport.TakingPort``: decide on the bare
        #: accepted descriptor and its address tuple, so that a refused peer
        #: costs no socket object, transport or address object.  None when
        #: the gate decides (banners, USERID) or for a sensor.
        self.take_connection: TakeConnection | None = None
        #: The handler's ``serve_fd`` (an external server): it is given the
        #: descriptor itself in a counted session, and no transport is built.
        self._serve_fd: Callable[[Session, int], None] | None = None
        #: The handler's ``answer_fd`` (daytime, time): it answers the
        #: descriptor and is done when the call returns, so no session is
        #: opened -- it would end before anything could count or see it.
        self._answer_fd: Callable[[Peer, int], None] | None = None
        if not (self._gated or service.is_sensor):
            self._serve_fd = getattr(handler, "serve_fd", None)
            self._answer_fd = getattr(handler, "answer_fd", None)
            self.take_connection = self._take_connection
        #: For ``superd.net.takingport.TakingPort``: answered connections
        #: are decided in batches (``begin_batch``).  Not the others: a
        #: connection that lives on holds its descriptor anyway, and the
        #: batch would only add descriptors held before deciding.
        self.batch_size = ANSWER_BATCH if self._answer_fd is not None else 0
        #: The policies of the accept batch under way (``begin_batch``).
        self._batch: list[Policy] | None = None
        # The reactor's clock itself: Runtime.seconds is one Python call more
        # per connection.
        self._clock = runtime.reactor.seconds
        self._v6_prefix = service.v6_source_prefix
        # Only sessions of services behind a proxy (tcpmux clients: perhaps,
        # through the tcpmux service) or counted by network carry more than
        # their peer.
        self._tags_sessions = (self._v6_prefix != 128 or service.is_mux_client
                               or service.extensions.proxy is not None)
        self._counter = access.counter
        self._block = service.block_key  # instances and per_source count per block
        self._refusals = access.stream_refusals
        self._counts = access.counters.for_block(service.id, service.block_key)

    def decide(self, peer: Peer) -> MaybeDeferred:
        """Run the service's policies for ``peer``."""
        return run_policies(self.policies, peer, self.runtime.seconds)

    def buildProtocol(self, addr: IAddress | None,
                      origin: ProxyOrigin | None = None) -> Protocol | None:
        """Admit or refuse the peer at ``addr``: Twisted's call, or
        ``superd.access.proxied``'s for the client a PROXY header named
        (``origin``: what the header said)."""
        peer = _peer(addr)
        if self.service.is_sensor:
            trip_sensor(self.service, peer, self.access)
            return self.refuse(peer, _SENSOR)
        if self._gated:
            return Gate(self, peer, None, origin)
        outcome = self.decide(peer)
        if not isinstance(outcome, Decision):
            return Gate(self, peer, outcome, origin)
        if outcome.allowed:
            return self.admit(peer, None, origin)
        return self.refuse(peer, outcome)

    def begin_batch(self) -> None:
        """
        The port accepted a batch of connections and is about to hand them
        over: until ``end_batch``, ``take_connection`` runs only the
        policies that may refuse someone now (``batch_policies``), so a
        service without bans in force and with empty hosts files decides
        nothing per connection.  Every connection of the batch arrived
        before this look at the hosts files, so a change written before a
        client connected applies to it.
        """
        self._batch = batch_policies(self.policies)

    def end_batch(self) -> None:
        """The batch is over: every policy decides again."""
        self._batch = None

    def _take_connection(self, fd: int, address: Any,
                         local: Peer | None) -> Protocol | Taken | None:
        """
        ``take_connection`` (see ``superd.net.takingport``): when the policies
        decide at once, admit the peer at ``address`` and give the handler
        ``fd`` (``TAKEN``) or, for a handler that talks on a transport, return
        its protocol; otherwise a ``Gate`` that waits for the decision, or
        what ``refuse`` returns.  The port owns ``fd``.
        """
        if type(address) is tuple and ":" not in address[0]:
            peer = Peer(address[0], address[1])  # IPv4: canonical already
        else:
            peer = _peer_of_tuple(address)
        policies = self._batch
        if policies is None:
            policies = self.policies
        if policies:
            outcome = run_policies(policies, peer, self._clock)
            if outcome is not ALLOW:  # the usual answer: one identity test
                if not isinstance(outcome, Decision):
                    return Gate(self, peer, outcome)
                if not outcome.allowed:
                    return self.refuse(peer, outcome)
        answer_fd = self._answer_fd
        if answer_fd is not None:
            self._counts.accept()
            try:
                answer_fd(peer, fd)
            except Exception:
                self._handler_failed(peer)
                events.emit_fail(self.service, events.REASON_FORK, peer, "handler failed")
            return TAKEN
        session = self.open_session(peer, local)
        serve_fd = self._serve_fd
        if serve_fd is None:  # the port serves the protocol on a transport
            return self.serve(session, peer)
        self._counts.accept()
        try:
            serve_fd(session, fd)
        except Exception:
            self._handler_failed(peer)
            session.end()
            events.emit_fail(self.service, events.REASON_FORK, peer, "handler failed")
        return TAKEN

    def _handler_failed(self, peer: Peer) -> None:
        _log.failure("handler of {service_id} failed for {peer_host}",
                     event=events.EV_HANDLER_ERROR, service_id=self.service.id,
                     peer_host=peer.host)

    def refuse(self, peer: Peer, decision: Decision) -> Protocol | None:
        """Log the refusal; the protocol to send ``banner_fail``, or None."""
        _record_refusal(self.access, self._counts, self._refusals, self.service,
                        peer, decision, self.runtime.seconds())
        if self.banners.fail is None:
            return None
        return FailBannerProtocol(self.banners.fail, self.runtime.reactor)

    def refused_unidentified(self) -> None:
        """Count an IDONLY client refused for want of an ident answer."""
        self._counts.refuse(events.REASON_NOID)

    def open_session(self, peer: Peer, local: Peer | None,
                     origin: ProxyOrigin | None = None) -> Session:
        """A session for ``peer``, counted (instances, per_source) at once."""
        session = Session(self.service.id, peer, local, self._clock(),
                          block=self._block)
        if self._tags_sessions:
            session.origin = origin
            session.source = source_key(peer.host, self._v6_prefix)
        self._counter.acquire(session)
        return session

    def admit(self, peer: Peer, local: Peer | None,
              origin: ProxyOrigin | None = None) -> Protocol | None:
        """Count a session for ``peer`` and let the handler serve it."""
        return self.serve(self.open_session(peer, local, origin), peer)

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
            self._handler_failed(peer)
            protocol = None
        if protocol is None:
            session.end()
            events.emit_fail(self.service, events.REASON_FORK, peer,
                             "handler refused")
        else:
            session.serve_with(_aborter(protocol))
        return protocol


class AccessControlledDatagramProtocol(DatagramProtocol):
    """Admits or drops each datagram of one in-process dgram service."""

    noisy = False  # no "Starting protocol" line per service at start, stop and reload

    def __init__(self, service: ServiceConfig, handler: Any,
                 access: AccessState) -> None:
        self.service = service
        self.handler = handler
        self.access = access
        self.runtime = access.runtime
        self.policies = policies_for(service, access, sessions=False)
        self._refusals = access.dgram_refusals
        self._waiting = 0
        self._counts = access.counters.for_block(service.id, service.block_key)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        peer = _peer_of_tuple(addr)
        if self.service.is_sensor:
            trip_sensor(self.service, peer, self.access)
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
                         event=events.EV_HANDLER_ERROR, service_id=self.service.id)

    def _refused(self, peer: Peer, decision: Decision) -> None:
        key = (self.service.id, peer.host, peer.port, decision.reason)
        _record_refusal(self.access, self._counts, self._refusals, self.service,
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
                          access: AccessState) -> bool:
    """
    Full checks for a datagram source of a ``wait = yes`` dgram service
    (FAIL logged once per source address and port a minute, as for every
    datagram; sensors trip).  This answer cannot wait: if it depends on
    host names not yet cached, the source is refused this time while the
    lookup fills the cache for its next datagram.
    """
    now = access.runtime.seconds
    if service.is_sensor:
        trip_sensor(service, peer, access)
        outcome: MaybeDeferred = _SENSOR
    else:
        policies = policies_for(service, access, sessions=False)
        outcome = run_policies(policies, peer, now)
    if not isinstance(outcome, Decision):
        outcome.addErrback(lambda _: None)
        outcome = deny(events.REASON_ADDRESS, "host name lookup pending")
    counts = access.counters.for_block(service.id, service.block_key)
    if outcome.allowed:
        counts.accept()
        return True
    key = (service.id, peer.host, peer.port, outcome.reason)
    _record_refusal(access, counts, access.dgram_refusals, service, peer, outcome,
                    now(), key)
    return False

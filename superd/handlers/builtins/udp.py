"""
Datagram builtins and their anti-reflection guard.

A UDP builtin answers whoever the source address claims to be, and that
address is trivially forged: echo and chargen are classic reflection and
amplification tools, and two UDP builtins can be made to talk to each other
for ever.  xinetd removed its check in 2005; superd restores OpenBSD inetd's
``dg_badinput``.  A reply is never sent

* to a source port below 1024, nor to NFS's 2049 (as OpenBSD inetd);
* to a port in ``protected_ports`` (the ports of the UDP builtins);
* to a broadcast (``255.0.0.0/8``, so also ``255.255.255.255``), multicast
  (``224.0.0.0/4``, ``ff00::/8``) or unspecified (``0.0.0.0/8``, ``::``)
  source, nor to an IPv4-compatible ``::a.b.c.d`` one; a v4-mapped source
  (``::ffff:a.b.c.d``, as a dual-stack socket reports IPv4 peers) is judged
  by its IPv4 address.

A subnet-directed broadcast source (``192.168.1.255``) needs the interface
table to recognise; the kernel refuses to send to it anyway because superd
never sets ``SO_BROADCAST``.

Each dropped datagram is counted, and logged as one structured
``reflection_drop`` event per source per ``DROP_LOG_WINDOW`` seconds (the
injected clock), so a spoofed flood cannot flood the log, and the table of
sources is bounded.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Final, Optional, Union

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from superd.config.model import ServiceConfig
from superd.core.interfaces import IDatagramHandler
from superd.core.runtime import Runtime
from superd.core.session import Peer
from superd.observe.events import EV_PEER_ERROR, EV_REFLECTION_DROP, emit_served_start

__all__ = [
    "DROP_LOG_WINDOW",
    "BuiltinDatagramHandler",
    "DropReporter",
    "reflection_risk",
]

#: At most one drop event per source address per this many seconds.
DROP_LOG_WINDOW: Final = 60.0
#: Sources tracked for rate-limiting drop events; beyond it, one summary
#: event per window covers all the others.
DROP_LOG_SOURCES: Final = 1024

#: Ports below this are privileged services: never a client's source port.
_RESERVED_PORTS: Final = 1024
#: Always protected besides the reserved range: NFS (as OpenBSD inetd).
_ALWAYS_PROTECTED: Final = frozenset({2049})

_log = Logger(namespace="superd.builtins")

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _ipv4_risk(addr: ipaddress.IPv4Address) -> Optional[str]:
    first_octet = int(addr) >> 24
    if addr.is_multicast:
        return "multicast"
    if first_octet == 255:
        return "broadcast"
    if first_octet == 0:
        return "unspecified"
    return None


def _ipv6_risk(addr: ipaddress.IPv6Address) -> Optional[str]:
    if addr.ipv4_mapped is not None:
        return _ipv4_risk(addr.ipv4_mapped)
    if addr.is_multicast:
        return "multicast"
    if addr.is_unspecified:
        return "unspecified"
    if int(addr) >> 32 == 0 and int(addr) != 1:
        # ::a.b.c.d, deprecated IPv4-compatible form (::1 is loopback).
        return "v4_compatible"
    return None


def reflection_risk(peer: Peer, protected_ports: frozenset[int]) -> Optional[str]:
    """
    Why replying to ``peer`` could reflect traffic, or None if it is safe.

    The answer is a short reason word (``privileged_port``,
    ``protected_port``, ``broadcast``, ``multicast``, ``unspecified``,
    ``v4_compatible``, ``bad_address``) for the drop event.
    """
    if peer.port < _RESERVED_PORTS:
        return "privileged_port"
    if peer.port in protected_ports or peer.port in _ALWAYS_PROTECTED:
        return "protected_port"
    try:
        addr: IPAddress = ipaddress.ip_address(peer.host.split("%", 1)[0])
    except ValueError:
        return "bad_address"
    if isinstance(addr, ipaddress.IPv4Address):
        return _ipv4_risk(addr)
    return _ipv6_risk(addr)


@attrs.define
class _SourceWindow:
    """When a source's last drop event was logged, and drops since then."""

    logged_at: float
    suppressed: int = 0


class DropReporter:
    """Logs dropped datagrams, at most once per source per window."""

    def __init__(self, clock: Any, service_id: str,
                 window: float = DROP_LOG_WINDOW,
                 capacity: int = DROP_LOG_SOURCES) -> None:
        self._clock = clock
        self._service_id = service_id
        self._window = window
        self._capacity = capacity
        self._sources: dict[str, _SourceWindow] = {}
        self._overflow = _SourceWindow(logged_at=float("-inf"))
        #: Every datagram dropped, logged or not.
        self.dropped = 0

    def report(self, peer: Peer, reason: str) -> None:
        """Count a datagram from ``peer`` dropped for ``reason``; maybe log it."""
        self.dropped += 1
        now = float(self._clock.seconds())
        window = self._sources.get(peer.host)
        if window is None and not self._make_room(now):
            self._report_overflow(now, reason)
            return
        if window is not None and now - window.logged_at < self._window:
            window.suppressed += 1
            return
        suppressed = 0 if window is None else window.suppressed
        self._sources[peer.host] = _SourceWindow(logged_at=now)
        self._emit(peer.host, peer.port, reason, suppressed)

    def _make_room(self, now: float) -> bool:
        if len(self._sources) < self._capacity:
            return True
        expired = [host for host, window in self._sources.items()
                   if now - window.logged_at >= self._window]
        for host in expired:
            del self._sources[host]
        return len(self._sources) < self._capacity

    def _report_overflow(self, now: float, reason: str) -> None:
        if now - self._overflow.logged_at < self._window:
            self._overflow.suppressed += 1
            return
        suppressed = self._overflow.suppressed
        self._overflow = _SourceWindow(logged_at=now)
        self._emit(None, None, reason, suppressed)

    def _emit(self, host: Optional[str], port: Optional[int], reason: str,
              suppressed: int) -> None:
        _log.warn(
            "{service_id}: dropped a datagram from {peer_host}:{peer_port}"
            " ({reason}); {suppressed} more dropped unlogged before it",
            event=EV_REFLECTION_DROP, service_id=self._service_id,
            peer_host="<many sources>" if host is None else host,
            peer_port=port, reason=reason, suppressed=suppressed,
        )


#: Computes a builtin's reply to one datagram (None: no reply).
Responder = Callable[[bytes], Optional[bytes]]


@implementer(IDatagramHandler)
class BuiltinDatagramHandler:
    """The ``IDatagramHandler`` of one UDP builtin service."""

    def __init__(self, service: ServiceConfig, runtime: Runtime,
                 respond: Responder, protected_ports: frozenset[int],
                 *, replies: bool = True) -> None:
        self.service = service
        self._respond = respond
        self._protected = protected_ports
        #: True for discard: it never replies, so nothing is checked.
        self.suppress_replies = not replies
        self.drops = DropReporter(runtime.reactor, service.id)

    def handle_datagram(self, data: bytes, peer: Peer,
                        reply: Callable[[bytes], object]) -> None:
        """Serve one datagram from ``peer``, unless a reply could be reflected."""
        if not self.suppress_replies:
            risk = reflection_risk(peer, self._protected)
            if risk is not None:
                self.drops.report(peer, risk)
                return
        emit_served_start(self.service, peer)
        answer = self._respond(data)
        if answer is None:
            return
        try:
            reply(answer)
        except OSError as error:
            # A send failure concerns this datagram only (a full socket
            # buffer, an unreachable peer): log it, keep serving.
            _log.info("{service_id}: reply to {peer_host}:{peer_port} failed: {error}",
                      event=EV_PEER_ERROR, service_id=self.service.id,
                      peer_host=peer.host, peer_port=peer.port, error=str(error))

    def __repr__(self) -> str:
        return f"<BuiltinDatagramHandler {self.service.id}>"

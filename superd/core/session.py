"""
A session: one admitted connection (or datagram exchange) from admission to end.

The access layer creates a ``Session`` when it admits a peer and registers the
releases it needs (instance and per-source counts) with ``on_end``.  Whoever
serves the session -- a builtin protocol, a spawned child, a relay -- calls
``end()`` exactly when the session is over: on ``connectionLost`` for
in-process protocols, on the child's exit for spawned servers.  ``end`` is
idempotent, so a belt-and-braces second call is harmless.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Callable, List, Optional

import attrs

if TYPE_CHECKING:
    from superd.core.origin import ProxyOrigin

__all__ = ["Peer", "Session", "canonical_host"]


def canonical_host(host: str) -> str:
    """
    The address superd uses for ``host`` everywhere (matching, counting, bans,
    logs): IPv4-mapped IPv6 (``::ffff:a.b.c.d``) becomes ``a.b.c.d``, IPv6 is
    compressed, and a zone index is dropped.
    """
    text = host.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


@attrs.frozen
class Peer:
    """A remote (or local) endpoint: canonical host string and port."""

    host: str
    port: int

    @classmethod
    def from_address(cls, address: object) -> "Peer":
        """Build from a Twisted ``IPv4Address``/``IPv6Address`` or ``(host, port)``."""
        if isinstance(address, tuple):
            return cls(canonical_host(str(address[0])), int(address[1]))
        host = getattr(address, "host", "")
        port = getattr(address, "port", 0)
        return cls(canonical_host(str(host)), int(port))


@attrs.define(eq=False)
class Session:
    """One admitted peer of one service, until ``end()``."""

    service_id: str
    peer: Optional[Peer]
    local: Optional[Peer]
    started: float
    #: The configuration block that admitted it (``ServiceConfig.block_key``),
    #: under which instances and per_source count it; the id by default.
    block: str = attrs.field(
        kw_only=True, default=attrs.Factory(lambda s: s.service_id, takes_self=True))
    #: What the PROXY header said, when the service reads one
    #: (``proxy_protocol``): ``peer`` is then the client it named.
    origin: Optional["ProxyOrigin"] = attrs.field(kw_only=True, default=None)
    #: The source ``per_source`` counts it under when that is not
    #: ``peer.host``: its IPv6 network (``v6_source_prefix``).
    source: Optional[str] = attrs.field(kw_only=True, default=None)
    #: Set by the spawner when a child serves the session.
    pid: Optional[int] = None
    ended: bool = False
    _on_end: List[Callable[["Session"], None]] = attrs.field(factory=list)

    def on_end(self, callback: Callable[["Session"], None]) -> None:
        """Call ``callback(self)`` when the session ends (at once if it has)."""
        if self.ended:
            callback(self)
        else:
            self._on_end.append(callback)

    def end(self) -> None:
        """Mark the session over and run the end callbacks, once."""
        if self.ended:
            return
        self.ended = True
        callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback(self)

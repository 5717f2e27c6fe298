"""
A session: one admitted connection (or datagram exchange) from admission to end.

The access layer creates a ``Session`` when it admits a peer and registers the
releases it needs (instance and per-source counts) with ``on_end``.  Whoever
serves the session -- a builtin protocol, a spawned child, a relay -- calls
``end()`` exactly when the session is over: on ``connectionLost`` for
in-process protocols, on the child's exit for spawned servers.  ``end`` is
idempotent, so a belt-and-braces second call is harmless.

Whoever serves a session also says how superd can end it early
(``serve_with``): abort the connection of an in-process protocol, stop the
child's process group.  ``terminate(reason)`` (a ban, a reload whose rules
refuse the session) runs that and records why; ``end()`` still follows only
when the connection or the child is really gone, and the EXIT line logged
then carries ``end_reason``.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

import attrs
from twisted.internet.interfaces import IAddress
from zope.interface import implementer

if TYPE_CHECKING:
    from superd.core.origin import ProxyOrigin

__all__ = ["Peer", "Session", "Terminator", "UnixPeer", "canonical_host", "parse_host"]

#: Ends a session early: aborts its connection or stops its server process.
Terminator = Callable[[], object]


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


def parse_host(text: str) -> str:
    """An IP address as written by a person (``superd bans add``), as
    ``canonical_host`` spells it, or an IPv6 network (what a sensor with
    ``v6_source_prefix`` bans) as its canonical ban key; raises
    ``ValueError`` for anything else."""
    if "/" in text:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"not an IP address or network: {text[:64]!r}") from None
        if network.version != 6:
            raise ValueError(f"not an IPv6 network: {text[:64]!r} (IPv4 sources are"
                             " banned by address)")
        return str(network)
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"not an IP address: {text[:64]!r}") from None
    return canonical_host(text)


@implementer(IAddress)
@attrs.frozen
class Peer:
    """
    A remote (or local) endpoint: canonical host string and port.  For the
    local end of a UNIX socket, ``host`` is the socket's path and ``port`` 0.
    An ``IAddress``: a UNIX port gives its factory the peer itself.
    """

    host: str
    port: int

    @classmethod
    def from_address(cls, address: object) -> "Peer":
        """Build from a Twisted ``IPv4Address``/``IPv6Address`` or ``(host, port)``;
        a ``Peer`` (a UNIX port passes its ``UnixPeer``) is returned as it is."""
        if isinstance(address, Peer):
            return address
        if isinstance(address, tuple):
            return cls(canonical_host(str(address[0])), int(address[1]))
        host = getattr(address, "host", "")
        port = getattr(address, "port", 0)
        return cls(canonical_host(str(host)), int(port))


@implementer(IAddress)
@attrs.frozen
class UnixPeer(Peer):
    """
    A process connected to a UNIX-domain socket, known by the credentials
    the kernel recorded when it connected (``SO_PEERCRED``, and
    ``SO_PEERGROUPS`` for its supplementary groups).  Its ``host`` is
    ``uid:N``: the source that ``per_source`` counts, logs show and
    sessions are indexed by; ``port`` is 0.
    """

    uid: int = -1
    gid: int = -1
    pid: int = 0
    #: Supplementary groups (empty where the kernel cannot tell).
    groups: Tuple[int, ...] = ()
    #: The path of the socket it connected to.
    path: str = ""

    @classmethod
    def of(cls, uid: int, gid: int, pid: int, groups: Tuple[int, ...] = (),
           path: str = "") -> "UnixPeer":
        """The peer with these credentials, on the socket at ``path``."""
        return cls(f"uid:{uid}", 0, uid, gid, pid, groups, path)


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
    #: Why superd ended the session before its client or server did
    #: (``terminate``), or None.
    end_reason: Optional[str] = None
    _on_end: List[Callable[["Session"], None]] = attrs.field(factory=list)
    _terminator: Optional[Terminator] = None

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
        self._terminator = None  # it holds the connection or the child
        callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback(self)

    def serve_with(self, terminator: Terminator) -> None:
        """Say how to end this session early; the latest caller serves it
        (the access layer's connection, then perhaps a child)."""
        self._terminator = terminator

    def terminate(self, reason: str) -> bool:
        """
        End the session early, for ``reason``: run its terminator now; the
        session ends when what served it is gone.  False when it has ended,
        is already being ended, or nothing serving it said how to end it.
        """
        if self.ended or self.end_reason is not None or self._terminator is None:
            return False
        self.end_reason = reason
        self._terminator()
        return True

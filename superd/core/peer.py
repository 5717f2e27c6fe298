"""
Who is at the other end of a connection: a ``Peer`` (an IP address and
port, canonical everywhere superd uses it) or a ``UnixPeer`` (the
credentials of a UNIX-domain socket's client).
"""

from __future__ import annotations

import ipaddress
from typing import Tuple

import attrs
from twisted.internet.interfaces import IAddress
from zope.interface import implementer

__all__ = ["Peer", "UnixPeer", "canonical_host", "parse_host"]


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

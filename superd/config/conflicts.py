"""
Duplicate listeners: two enabled services that would bind the same address.

Pure.  A listener is (protocol, port, address); a service without ``bind``
listens on the wildcard of its families.  Two listeners clash when protocol
and port are equal (port 0 never clashes: the kernel picks a free one) and
their addresses overlap: the same address, or a wildcard covering the other's
family (Linux refuses the second bind in both cases); two UNIX sockets clash
when their paths are equal.  xinetd only compares
against earlier *bound* services; superd reports every clash, naming both.
"""

from __future__ import annotations

import ipaddress
from typing import Dict, Iterable, List, Optional, Tuple

import attrs

from superd.config.addrspec import canonical_network
from superd.config.draft import Reporter
from superd.config.isolation import Blame
from superd.config.model import ServiceConfig

__all__ = ["Listener", "check_conflicts", "listeners"]


@attrs.frozen
class Listener:
    """One socket a service will bind; ``address`` None is the wildcard."""

    service: ServiceConfig
    protocol: str
    port: int
    address: Optional[str]
    families: Tuple[int, ...]

    def overlaps(self, other: "Listener") -> bool:
        """True if binding both would fail."""
        if self.protocol == "unix" or other.protocol == "unix":
            return self.protocol == other.protocol and self.address == other.address
        if (self.protocol, self.port) != (other.protocol, other.port) or self.port == 0:
            return False
        if self.address is not None and other.address is not None:
            return self.address == other.address
        return bool(set(self.families) & set(other.families))

    @property
    def shown(self) -> str:
        """The address as a person reads it."""
        return self.address if self.address is not None else "*"


def _wildcard_families(service: ServiceConfig, address: Optional[str]) -> Tuple[int, ...]:
    if address == "0.0.0.0" or ("IPv4" in service.flags and "IPv6" not in service.flags):
        return (4,)
    return (6,) if service.v6only else (4, 6)


def _canonical(address: str) -> Tuple[Optional[str], int]:
    """A specific address as (text, family), or (None, 0) for a wildcard."""
    parsed = ipaddress.ip_address(address)
    if parsed.is_unspecified:
        return None, 0
    network = canonical_network(ipaddress.ip_network(parsed))
    return str(network.network_address), network.version


def listeners(service: ServiceConfig) -> List[Listener]:
    """Every socket ``service`` binds (none for tcpmux clients)."""
    if service.unix is not None:
        return [Listener(service, "unix", 0, service.unix.path, ())]
    if service.port is None:
        return []
    found = []
    for written in service.bind or (None,):
        address, family = _canonical(written) if written else (None, 0)
        families = (family,) if address else _wildcard_families(service, written)
        found.append(Listener(service, service.protocol, service.port, address, families))
    return found


def _describe(clash: Listener, earlier: Listener) -> str:
    first, second = earlier.service, clash.service
    where = f"{clash.protocol} port {clash.port} on {clash.shown}"
    if clash.protocol == "unix":
        where = f"UNIX socket {clash.shown}"
    seen = f"service {first.name} ({first.location})"
    if first.id == second.id:
        return f"id {second.id} is not unique: {seen} already listens on {where}"
    return f"{where} is already used by {seen}"


def check_conflicts(services: Iterable[ServiceConfig], report: Reporter) -> None:
    """Report each service whose listener clashes with an earlier service's
    (the later one cannot run)."""
    # Indexed by (protocol, port): only those can clash, and large trees
    # (thousands of services) stay linear.
    seen: Dict[Tuple[str, int], List[Listener]] = {}
    for service in services:
        mine = listeners(service)
        clash = next(
            ((m, s) for m in mine for s in seen.get((m.protocol, m.port), ()) if m.overlaps(s)),
            None,
        )
        if clash is not None:
            attribute = next((a for a in ("bind", "port") if a in service.lines), None)
            with report.blaming(Blame(block=service.location)):
                report.error(
                    service.line_of(attribute or "bind"),
                    _describe(*clash),
                    service=service.name,
                    attribute=attribute,
                )
        for listener in mine:
            seen.setdefault((listener.protocol, listener.port), []).append(listener)

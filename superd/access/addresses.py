"""
``only_from`` / ``no_access``: the documented best match, at constant cost.

Every entry of both lists gets a *rank*; among the entries that match a
peer, the highest rank decides, and if entries of both lists share that
rank the peer is denied.  Ranks, from the
most specific down:

* an exact host -- a full-length address (``/32``, ``/128``) or a ``HOST``
  name -- (tier 2);
* a ``.domain`` suffix, longer suffixes first (tier 1);
* a network, longer prefixes first (tier 0).

A peer no entry matches is allowed only when ``only_from`` is absent
(``only_from`` written empty admits nobody).  IPv4-mapped addresses, on
either side, are treated as plain IPv4; IPv6 entries (``::/0`` included)
therefore never match an IPv4 peer, and IPv4 entries never match IPv6 ones.

Numeric entries live in per-family prefix tables -- one dict per prefix
length that occurs, probed longest first -- so a lookup costs at most one
dict probe per distinct prefix length (33 for IPv4), however long the lists
are; xinetd scans its lists linearly.  Names are looked up (reverse plus
forward confirmation, without blocking the reactor) only when the numeric
entries cannot decide on their own.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import Deferred

from superd.access.decision import ALLOW, Decision, MaybeDeferred, deny
from superd.access.prefixes import address_int, family_tables, unmapped
from superd.access.resolver import HostNames, NameResolver
from superd.config.model import AddressKind, AddressSpec, ServiceConfig
from superd.core.session import Peer
from superd.observe import events

__all__ = ["VERDICT_CACHE", "AddressPolicy", "AddressRules"]

ALLOWED = 1
DENIED = 2
Rank = tuple[int, int]
_NO_RANK: Rank = (-1, -1)
_TIER_NETWORK, _TIER_DOMAIN, _TIER_HOST = 0, 1, 2

def _domain_key(name: str) -> str:
    return name.lower().strip(".")


class AddressRules:
    """The compiled ``only_from`` / ``no_access`` lists of one service."""

    def __init__(self, only_from: tuple[AddressSpec, ...] | None,
                 no_access: Iterable[AddressSpec]) -> None:
        self.only_from_set = only_from is not None
        self._tables = family_tables()
        self._hosts: dict[str, int] = {}
        self._domains: dict[str, int] = {}
        self._name_flags = 0
        self._name_rank = _NO_RANK
        for spec in only_from or ():
            self._add(spec, ALLOWED)
        for spec in no_access:
            self._add(spec, DENIED)

    @classmethod
    def for_service(cls, service: ServiceConfig) -> AddressRules | None:
        """The service's rules, or None when it has no address lists."""
        if service.only_from is None and not service.no_access:
            return None
        return cls(service.only_from, service.no_access)

    @property
    def needs_names(self) -> bool:
        """True when some entry is a host name or a domain."""
        return bool(self._name_flags)

    def _add(self, spec: AddressSpec, flag: int) -> None:
        if spec.kind is AddressKind.NETWORK and spec.network is not None:
            network = unmapped(spec.network)
            self._tables[network.version].add(network, flag)
            return
        if spec.name is None:
            return
        key = _domain_key(spec.name)
        if spec.kind is AddressKind.HOST:
            self._hosts[key] = self._hosts.get(key, 0) | flag
            rank: Rank = (_TIER_HOST, 0)
        else:
            self._domains[key] = self._domains.get(key, 0) | flag
            rank = (_TIER_DOMAIN, key.count(".") + 1)
        self._name_flags |= flag
        self._name_rank = max(self._name_rank, rank)

    def _numeric(self, host: str) -> tuple[Rank, int]:
        parsed = address_int(host)
        if parsed is None:
            return _NO_RANK, 0
        table = self._tables[parsed[0]]
        hit = table.best(parsed[1])
        if hit is None:
            return _NO_RANK, 0
        length, flags = hit
        tier = _TIER_HOST if length == table.width else _TIER_NETWORK
        return (tier, length if tier == _TIER_NETWORK else 0), flags

    def _named(self, names: HostNames) -> tuple[Rank, int]:
        best, flags = _NO_RANK, 0
        for name in names.names:
            candidates = [((_TIER_HOST, 0), self._hosts.get(name, 0))]
            labels = name.split(".")
            for i in range(1, len(labels)):
                suffix = ".".join(labels[i:])
                rank = (_TIER_DOMAIN, len(labels) - i)
                candidates.append((rank, self._domains.get(suffix, 0)))
            for rank, found in candidates:
                if not found or rank < best:
                    continue
                flags = found | (flags if rank == best else 0)
                best = rank
        return best, flags

    def _verdict(self, flags: int) -> bool:
        if not flags:
            return not self.only_from_set
        return flags == ALLOWED

    def _decided(self, rank: Rank, verdict: bool) -> bool:
        if not self._name_flags or rank > self._name_rank:
            return True
        if verdict:
            return not self._name_flags & DENIED
        return not self._name_flags & ALLOWED

    def decide(self, host: str, names: HostNames | None = None) -> bool | None:
        """
        True to allow ``host``, False to deny, None when only its names can
        tell (pass them in ``names`` to decide).
        """
        rank, flags = self._numeric(host)
        if names is None:
            verdict = self._verdict(flags)
            return verdict if self._decided(rank, verdict) else None
        name_rank, name_flags = self._named(names)
        if name_rank > rank:
            rank, flags = name_rank, name_flags
        elif name_rank == rank:
            flags |= name_flags
        return self._verdict(flags)


_DENY = deny(events.REASON_ADDRESS)


def _as_decision(allowed: bool | None) -> Decision:
    return ALLOW if allowed else _DENY


#: Sources whose verdict one policy remembers.  When full it starts again
#: empty: a flood of distinct sources costs what the lookup costs, and the
#: sources that keep coming back are soon remembered again.
VERDICT_CACHE = 1024


class AddressPolicy:
    """Denies peers the service's address lists do not admit."""

    reason = events.REASON_ADDRESS

    def __init__(self, rules: AddressRules,
                 resolver: NameResolver | None) -> None:
        self.rules = rules
        self.resolver = resolver
        # Verdicts the numeric entries decided alone, by source address.
        # The rules never change (a reload builds a new policy), so such a
        # verdict is final: parsing the address and probing the prefix
        # tables is done once per source, not once per connection.  A
        # verdict that depends on host names is never stored.
        self._verdicts: dict[str, Decision] = {}

    def check(self, peer: Peer, now: float) -> MaybeDeferred:
        host = peer.host
        known = self._verdicts.get(host)
        if known is not None:
            return known
        verdict = self.rules.decide(host)
        if verdict is not None:
            decision = _as_decision(verdict)
            verdicts = self._verdicts
            if len(verdicts) >= VERDICT_CACHE:
                verdicts.clear()
            verdicts[host] = decision
            return decision
        if self.resolver is None:
            return _as_decision(self.rules.decide(peer.host, HostNames()))
        cached = self.resolver.cached(peer.host)
        if cached is not None:
            return _as_decision(self.rules.decide(peer.host, cached))
        pending: Deferred[HostNames] = self.resolver.names(peer.host)
        return pending.addCallback(
            lambda names: _as_decision(self.rules.decide(peer.host, names)))

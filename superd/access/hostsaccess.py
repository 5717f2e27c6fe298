"""
hosts.allow / hosts.deny (hosts_access(5)) for every service without
``NOLIBWRAP``, re-read whenever the files change.

Access is granted when a rule in hosts.allow matches, denied when one in
hosts.deny matches, and granted otherwise; ``ALLOW``/``DENY`` options turn a
rule's meaning around.  Patterns that superd cannot evaluate
(``user@host``, netgroups ...) are *unknown*: an allow rule needs a sure
match, a deny rule fires on an unknown one.  ``KNOWN``/``UNKNOWN`` speak of
the client's host name only (superd does no ident lookup for this), a name
being known when its reverse lookup is confirmed by a forward lookup;
``PARANOID`` matches a client whose reverse name does not confirm; ``LOCAL``
matches a confirmed name without a dot.

Each check re-parses a file whose (mtime, size, inode) changed: appending
a line to hosts.deny takes effect on the next connection, with no restart
and no signal (the seed's SeeYouLater workflow).  The daemon stats the
files only when an inotify watch (``superd.access.changewatch``) says they
may have changed; without one, on every check.  While both files are empty,
a port that hands over a batch of accepted connections asks once for the
batch (``HostsAccessPolicy.allows_everyone``), after accepting all of it,
so a rule written before any of those clients connected still applies.
A missing file is empty.
A line that cannot be parsed is reported once and denies the daemons it
names (every daemon if its daemon list is unreadable); an unreadable file
denies every daemon.

Rules are grouped into runs of equal effect (inside a run, order cannot
change the answer), and each run's plain address and network patterns go
into prefix tables per daemon name, so a hosts.deny of 10,000 banned
addresses costs a few dict probes per connection, not a scan.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from collections.abc import Callable
from typing import TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from superd.access import hostsparse as hp
from superd.access.changewatch import ChangeWatch
from superd.access.decision import ALLOW, Decision, MaybeDeferred, deny
from superd.access.prefixes import IPNetwork, PrefixTable, family_tables
from superd.access.resolver import UNKNOWN_NAMES, HostNames, NameResolver
from superd.config.model import ServiceConfig
from superd.core.session import Peer
from superd.observe import events

__all__ = ["HostsAccess", "HostsAccessPolicy", "HostsTable", "daemon_name"]

_log = Logger(namespace="superd")
_ALL_DAEMONS = "\0all"
_NETWORK_TYPES = (ipaddress.IPv4Network, ipaddress.IPv6Network)
_S = TypeVar("_S")


def daemon_name(service: ServiceConfig) -> str:
    """
    The daemon name xinetd gives libwrap for ``service``: ``libwrap`` if
    set; the service's name for builtins and redirects; else the server
    program's base name (``server_args[0]``'s with ``NAMEINARGS``).
    """
    if service.libwrap:
        return service.libwrap
    if service.is_internal or service.redirect is not None or not service.server:
        return service.name
    if "NAMEINARGS" in service.flags and service.server_args:
        return os.path.basename(service.server_args[0])
    return os.path.basename(service.server)


class NeedNames(Exception):
    """The answer depends on the client's host names, not yet looked up."""


@attrs.define
class Client:
    """What the patterns are matched against."""

    host: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    names: HostNames | None = None

    @classmethod
    def of(cls, host: str, names: HostNames | None = None) -> Client:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        return cls(host, address, names)

    def require_names(self) -> HostNames:
        if self.names is None:
            raise NeedNames()
        return self.names


def _by_names(p: hp.Pattern, names: HostNames) -> bool:
    value = str(p.value)
    if p.kind == hp.NAME:
        return value in names.names
    if p.kind == hp.DOMAIN:
        return any(n.endswith("." + value) for n in names.names)
    if p.kind == hp.WILDCARD:
        return any(fnmatch.fnmatchcase(n, value) for n in names.names)
    if p.kind == hp.LOCAL:
        return any("." not in n for n in names.names)
    if p.kind == hp.KNOWN:
        return names.known
    if p.kind == hp.UNKNOWN:
        return not names.known
    return p.kind == hp.PARANOID and names.mismatch


def match_client(p: hp.Pattern, client: Client) -> bool | None:
    """Whether ``p`` matches ``client``; None when superd cannot tell."""
    kind = p.kind
    if kind == hp.ALL:
        return True
    if kind == hp.UNSUPPORTED:
        return None
    if kind == hp.ADDRESS:
        return p.value == client.host
    if kind == hp.NETWORK:
        net = p.value
        return (client.address is not None and isinstance(net, _NETWORK_TYPES)
                and client.address.version == net.version
                and client.address in net)
    if kind == hp.PREFIX:
        return client.host.startswith(str(p.value))
    if kind == hp.WILDCARD and fnmatch.fnmatchcase(client.host, str(p.value)):
        return True
    return _by_names(p, client.require_names())


def match_daemon(p: hp.Pattern, daemon: str) -> bool | None:
    """Whether ``p`` matches the (lower-case) daemon name."""
    if p.kind == hp.ALL:
        return True
    if p.kind == hp.UNSUPPORTED:
        return None
    return p.value == daemon


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def evaluate(patterns: hp.PatternList,
             match: Callable[[hp.Pattern, _S], bool | None],
             subject: _S) -> bool | None:
    """Three-valued match of ``items EXCEPT except_`` (right-nested)."""
    result: bool | None = False
    for item in patterns.items:
        found = match(item, subject)
        if found:
            result = True
            break
        if found is None:
            result = None
    if result is False or patterns.except_ is None:
        return result
    excluded = evaluate(patterns.except_, match, subject)
    return _and(result, None if excluded is None else not excluded)


def _indexable(p: hp.Pattern) -> IPNetwork | None:
    """The network an address-like pattern denotes, if it is one."""
    if p.kind == hp.ADDRESS:
        return ipaddress.ip_network(str(p.value))
    if p.kind == hp.NETWORK and isinstance(p.value, _NETWORK_TYPES):
        return p.value
    if p.kind == hp.PREFIX:
        parts = str(p.value).rstrip(".").split(".")
        if all(x.isdigit() and str(int(x)) == x and int(x) < 256 for x in parts):
            padded = ".".join(parts + ["0"] * (4 - len(parts)))
            return ipaddress.IPv4Network(f"{padded}/{8 * len(parts)}")
    return None


@attrs.define
class _Run:
    """Consecutive rules of one effect: indexed networks plus the rest."""

    allow: bool
    index: dict[str, dict[int, PrefixTable]] = attrs.field(factory=dict)
    rules: list[hp.Rule] = attrs.field(factory=list)

    def add(self, rule: hp.Rule) -> None:
        daemons = rule.daemons
        simple = daemons.except_ is None and rule.clients.except_ is None and all(
            p.kind in (hp.ALL, hp.NAME) for p in daemons.items)
        if not simple:
            self.rules.append(rule)
            return
        rest = []
        for p in rule.clients.items:
            network = _indexable(p)
            if network is None:
                rest.append(p)
                continue
            for d in daemons.items:
                key = _ALL_DAEMONS if d.kind == hp.ALL else str(d.value)
                tables = self.index.setdefault(key, family_tables())
                tables[network.version].add(network, 1)
        if rest:
            self.rules.append(attrs.evolve(
                rule, clients=hp.PatternList(tuple(rest))))

    def fires(self, daemon: str, client: Client) -> bool:
        if client.address is not None:
            for key in (daemon, _ALL_DAEMONS):
                tables = self.index.get(key)
                if tables and tables[client.address.version].best(
                        int(client.address)):
                    return True
        for rule in self.rules:
            daemons = evaluate(rule.daemons, match_daemon, daemon)
            if daemons is False:
                continue
            hit = _and(daemons, evaluate(rule.clients, match_client, client))
            if hit or (hit is None and not self.allow):
                return True
        return False


class HostsTable:
    """One parsed file, ready for matching."""

    def __init__(self, parsed: hp.HostsFile) -> None:
        self.parsed = parsed
        self._runs: list[_Run] = []
        for rule in parsed.rules:
            if not self._runs or self._runs[-1].allow != rule.allow:
                self._runs.append(_Run(rule.allow))
            self._runs[-1].add(rule)
        #: No rule and no broken line: decides nothing for anyone.
        self.empty = not self._runs and not parsed.broken

    def broken_for(self, daemon: str) -> hp.BrokenRule | None:
        """A broken line that concerns ``daemon``, if any."""
        for broken in self.parsed.broken:
            if broken.daemons is None or evaluate(
                    broken.daemons, match_daemon, daemon) is not False:
                return broken
        return None

    def decide(self, daemon: str, client: Client) -> bool | None:
        """The first firing rule's effect, None when no rule fires."""
        for run in self._runs:
            if run.fires(daemon, client):
                return run.allow
        return None


_FileKey = tuple[int, int, int]


class WatchedFile:
    """One hosts file, re-parsed when its (mtime, size, inode) changes."""

    def __init__(self, path: str, *, default_allow: bool) -> None:
        self.path = path
        self._default_allow = default_allow
        self._key: _FileKey | None = None
        self._table = HostsTable(hp.HostsFile(path))

    def current(self) -> HostsTable:
        """The table for the file as it is now (a stat per call)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._replace((-1, -1, -1), "")
        except OSError as e:
            return self._unreadable(e)
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key == self._key:
            return self._table
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            return self._unreadable(e)
        return self._replace(key, text)

    def _replace(self, key: _FileKey, text: str) -> HostsTable:
        if key != self._key:
            parsed = hp.parse_hosts(self.path, text,
                                    default_allow=self._default_allow)
            self._key, self._table = key, HostsTable(parsed)
            _report(parsed)
        return self._table

    def _unreadable(self, error: OSError) -> HostsTable:
        key = (-2, -2, error.errno or 0)
        if key != self._key:
            broken = hp.BrokenRule(0, f"cannot read the file: {error.strerror}")
            parsed = hp.HostsFile(self.path, broken=(broken,))
            self._key, self._table = key, HostsTable(parsed)
            _report(parsed)
        return self._table


def _report(parsed: hp.HostsFile) -> None:
    """Log a file's problems once, when it is (re)read."""
    for broken in parsed.broken:
        _log.error("{file}:{line}: {problem}; denying the daemons this line"
                   " names", event=events.EV_CONFIG_ERROR, file=parsed.name,
                   line=broken.line, problem=broken.message)
    for line, warning in parsed.warnings:
        _log.warn("{file}:{line}: {problem}", event=events.EV_CONFIG_WARNING,
                  file=parsed.name, line=line, problem=warning)


def _denied(daemon: str) -> Decision:
    return deny(events.REASON_LIBWRAP, f"libwrap={daemon}")


class HostsAccess:
    """hosts.allow and hosts.deny of one daemon process."""

    def __init__(self, allow_path: str, deny_path: str,
                 resolver: NameResolver | None = None,
                 changes: ChangeWatch | None = None) -> None:
        self.allow = WatchedFile(allow_path, default_allow=True)
        self.deny = WatchedFile(deny_path, default_allow=False)
        self.resolver = resolver
        #: Tells when the files need a look; None: look on every check.
        self.changes = changes
        self._tables: tuple[HostsTable, HostsTable] | None = None

    def tables(self) -> tuple[HostsTable, HostsTable]:
        """Both tables as the files are now."""
        tables = self._tables
        changes = self.changes
        if changes is None or changes.changed() or tables is None:
            tables = self._tables = (self.allow.current(), self.deny.current())
        return tables

    def decide(self, daemon: str, host: str, names: HostNames | None = None,
               tables: tuple[HostsTable, HostsTable] | None = None) -> bool:
        """
        Allow (True) or deny; raises NeedNames if names would decide.
        ``tables``: what ``tables()`` just returned, to avoid a second look.
        """
        if tables is None:
            tables = self.tables()
        if tables[0].empty and tables[1].empty:
            return True  # the usual case: no client to parse, nothing to match
        daemon = daemon.lower()
        if any(t.broken_for(daemon) is not None for t in tables):
            return False
        client = Client.of(host, names)
        for table in tables:
            verdict = table.decide(daemon, client)
            if verdict is not None:
                return verdict
        return True

    def check(self, daemon: str, peer: Peer,
              tables: tuple[HostsTable, HostsTable] | None = None) -> MaybeDeferred:
        """The decision for ``peer``, later if a name lookup is needed."""
        try:
            if self.decide(daemon, peer.host, None, tables):
                return ALLOW
            return _denied(daemon)
        except NeedNames:
            pass
        denied = _denied(daemon)
        cached = None if self.resolver is None else self.resolver.cached(peer.host)
        if self.resolver is None or cached is not None:
            names = cached or UNKNOWN_NAMES
            return ALLOW if self.decide(daemon, peer.host, names) else denied
        pending: Deferred[HostNames] = self.resolver.names(peer.host)
        return pending.addCallback(
            lambda found: ALLOW if self.decide(daemon, peer.host, found)
            else denied)


class HostsAccessPolicy:
    """Denies what hosts.allow/hosts.deny deny (FAIL ``libwrap``)."""

    reason = events.REASON_LIBWRAP

    def __init__(self, daemon: str, hosts: HostsAccess) -> None:
        self.daemon = daemon
        self.hosts = hosts

    def allows_everyone(self) -> bool:
        """True when both files are empty (``superd.access.pipeline.batch_policies``):
        the files are looked at now, once for a whole batch of connections."""
        tables = self.hosts.tables()
        return tables[0].empty and tables[1].empty

    def check(self, peer: Peer, now: float) -> MaybeDeferred:
        tables = self.hosts.tables()
        if tables[0].empty and tables[1].empty:
            return ALLOW  # the usual case, spared the matching machinery
        return self.hosts.check(self.daemon, peer, tables)


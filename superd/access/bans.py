"""
The global ban list that SENSOR services fill (xinetd's global_no_access).

A hit on a sensor bans the source's canonical address from every service,
TCP and UDP, for the sensor's ``deny_time`` minutes (``FOREVER``: until
removed; 0/``NEVER``: no ban).  Unlike xinetd, a repeat hit extends the ban,
and bans are kept in SQLite (``banstore``) so they survive reload and
restart.  Lookups are served from an in-memory dict -- no SQL per
connection, and a flood of hits on a sensor writes (and logs) an extension
only once it has grown by a minute; once a second the list checks ``PRAGMA data_version`` to pick up
changes made by ``superd bans --offline`` and, once a minute, purges expired bans.
Expired bans are also dropped lazily when looked up.

A sensor with ``v6_source_prefix`` under 128 bans an IPv6 source's whole
network of that length (the key ``2001:db8:1:2::/64``), which every service
then refuses, whatever its own prefix: how wide a ban is, is the sensor's
to decide.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from superd.access.banstore import Ban, BanStore
from superd.access.prefixes import network_length, source_key
from superd.config.model import FOREVER
from superd.observe import events

__all__ = ["BanList"]

_log = Logger(namespace="superd")

#: A bound on memory when a (spoofed) UDP flood hits a sensor.
MAX_BANS = 100_000
#: Extensions of a ban are written (and logged) when they add this much.
PERSIST_STEP = 60.0


class BanList:
    """Banned sources: memory for lookups, SQLite for persistence."""

    def __init__(self, store: BanStore, clock: Any, *,
                 poll_interval: float = 1.0,
                 purge_interval: float = 60.0) -> None:
        self.store = store
        self._clock = clock
        self._bans: dict[str, float] = {}
        #: The prefix lengths of the network bans (a length whose last ban
        #: went may stay until the next purge: it only costs a probe).
        self._lengths: frozenset[int] = frozenset()
        #: The expiry last written to the database, per host.
        self._persisted: dict[str, float] = {}
        self._version = -1
        #: Called with (host, expires, service_id) when a ban made here is
        #: written (superd.fleet shares it); not for ``merge``d bans.
        self.listeners: list[Callable[[str, float, str], None]] = []
        #: Called with the host when an unexpired ban is lifted by hand
        #: (``lift``, or ``superd bans --offline remove`` in the database).
        self.removal_listeners: list[Callable[[str], None]] = []
        #: Called with the host whenever a ban starts here (not when one is
        #: extended), whatever made it: a sensor, the operator, the fleet
        #: (``merge``), another process (the database).
        self.new_ban_listeners: list[Callable[[str], None]] = []
        self._poll = LoopingCall(self._tick)
        self._poll.clock = clock
        self._poll_interval = poll_interval
        self._purge_interval = purge_interval
        self._last_purge = clock.seconds()
        self._load()

    def __len__(self) -> int:
        return len(self._bans)

    def is_banned(self, host: str) -> bool:
        """True while ``host`` (canonical) is banned; drops an expired ban."""
        expires = self._bans.get(host)
        if expires is None:
            if self._lengths:
                return self.covering(host) is not None
            return False
        if expires > self._clock.seconds():
            return True
        del self._bans[host]
        return False

    def covering(self, host: str) -> str | None:
        """The ban that bans ``host``: its address, or a network around it."""
        if host in self._bans and self._unexpired(host):
            return host
        if ":" in host:
            for length in self._lengths:
                key = source_key(host, length)
                if key in self._bans and self._unexpired(key):
                    return key
        return None

    def _unexpired(self, key: str) -> bool:
        if self._bans[key] > self._clock.seconds():
            return True
        del self._bans[key]
        return False

    def _note(self, host: str) -> None:
        length = network_length(host)
        if length is not None and length not in self._lengths:
            self._lengths = self._lengths | {length}

    def _recount(self) -> None:
        self._lengths = frozenset(
            n for n in map(network_length, self._bans) if n is not None)

    def expiry(self, host: str) -> float | None:
        """When ``host``'s ban ends (``math.inf``: never), None if not banned."""
        key = self.covering(host)
        return None if key is None else self._bans[key]

    def ban(self, host: str, minutes: int, service_id: str, *,
            source: str = "sensor") -> None:
        """Ban ``host`` for ``minutes`` (FOREVER, or 0 for no ban), or extend;
        ``source`` (``sensor``, ``operator``) says who, in the log."""
        if minutes == 0:
            return
        now = self._clock.seconds()
        until = math.inf if minutes == FOREVER else now + 60.0 * minutes
        previous = self._bans.get(host)
        if previous is None and len(self._bans) >= MAX_BANS:
            _log.error("ban list full; not banning {peer_host}",
                       event=events.EV_BAN, peer_host=host, action="full")
            return
        extended = previous is not None and previous > now
        expires = self._bans[host] = max(until, previous or 0.0)
        self._note(host)
        if extended and expires - self._persisted.get(host, 0.0) < PERSIST_STEP:
            # A flood of hits on a sensor must not become a flood of
            # database writes and log lines: the extension is kept in memory
            # and written once it has grown by PERSIST_STEP seconds.
            return
        self._persisted[host] = expires
        self._persist(host, now, service_id)
        self._log_ban(host, minutes, service_id, extended, source)
        for listener in self.listeners:
            listener(host, expires, service_id)
        if not extended:
            self._started(host)

    def merge(self, host: str, expires: float, service_id: str) -> bool:
        """
        Apply a ban made elsewhere (absolute ``expires``; ``math.inf``: never):
        True if it bans ``host`` here or extends its ban.  An expired one is
        ignored, never resurrected.  Listeners are not told.
        """
        now = self._clock.seconds()
        previous = self._bans.get(host)
        if expires <= now or (previous is not None and previous >= expires):
            return False
        if previous is None and len(self._bans) >= MAX_BANS:
            return False
        self._bans[host] = self._persisted[host] = expires
        self._note(host)
        self._persist(host, now, service_id)
        if previous is None or previous <= now:
            self._started(host)
        return True

    def _started(self, host: str) -> None:
        for listener in tuple(self.new_ban_listeners):
            listener(host)

    def unban(self, host: str) -> bool:
        """Lift the ban of ``host``; True if there was one."""
        present = self._bans.pop(host, None) is not None
        self._persisted.pop(host, None)
        self._write(lambda: self.store.remove(host))
        return present

    def lift(self, host: str, source: str) -> bool:
        """Lift the ban of ``host`` by hand (``source``: who): stored, told
        to the removal listeners (the fleet), logged; True if it was banned."""
        banned = self.is_banned(host)
        self.unban(host)
        if not banned:
            return False
        for removed in self.removal_listeners:
            removed(host)
        _log.warn("Removing {peer_host} from the global_no_access list ({source})",
                  event=events.EV_BAN, action="lift", peer_host=host, source=source)
        return True

    def in_force(self) -> dict[str, float]:
        """Every unexpired ban: host -> when it ends (``math.inf``: never)."""
        now = self._clock.seconds()
        return {host: until for host, until in self._bans.items() if until > now}

    def _persist(self, host: str, now: float, service_id: str) -> None:
        expires = self._bans[host]
        def write() -> None:
            old = self.store.get(host)
            hits = 1 if old is None else old.hits + 1
            added = now if old is None else old.added
            stored = None if math.isinf(expires) else expires
            self.store.put(Ban(host, stored, added, service_id, hits))
        self._write(write)

    def _write(self, operation: Any) -> None:
        try:
            operation()
        except sqlite3.Error as e:
            _log.error("cannot store bans in {path}: {error}",
                       event=events.EV_BAN, action="store_error",
                       path=self.store.path, error=str(e))

    def _log_ban(self, host: str, minutes: int, service_id: str,
                 extended: bool, source: str) -> None:
        if minutes == FOREVER:
            text = "Adding {peer_host} to the global_no_access list forever"
        else:
            text = ("Adding {peer_host} to the global_no_access list for"
                    " {minutes} minutes")
        if extended:
            text = "Extending: " + text
        if source != "sensor":
            text += " ({source})"
        _log.warn(text, event=events.EV_BAN, peer_host=host,
                      minutes=None if minutes == FOREVER else minutes,
                      service_id=service_id, source=source,
                      action="extend" if extended else "add")

    # -- synchronisation with the database ------------------------------

    def _load(self) -> None:
        """Replace the in-memory list with the database's unexpired bans."""
        now = self._clock.seconds()
        try:
            self._version = self.store.data_version()
            stored = self.store.all()
        except sqlite3.Error as e:
            _log.error("cannot read bans from {path}: {error}",
                       event=events.EV_BAN, action="store_error",
                       path=self.store.path, error=str(e))
            return
        before = self._bans
        self._bans = {
            ban.host: math.inf if ban.expires is None else ban.expires
            for ban in stored
            if ban.expires is None or ban.expires > now
        }
        self._persisted = dict(self._bans)
        self._recount()
        self._tell_changes(before, {ban.host: ban.service for ban in stored}, now)
        for host in [h for h in self._bans if before.get(h, 0.0) <= now]:
            self._started(host)

    def _tell_changes(self, before: dict[str, float], services: dict[str, str],
                      now: float) -> None:
        """Listeners learn of bans another process added, extended or lifted."""
        if not (self.listeners or self.removal_listeners):
            return
        for host, expires in self._bans.items():
            if before.get(host, 0.0) < expires:
                for listener in self.listeners:
                    listener(host, expires, services.get(host, ""))
        for host in before.keys() - self._bans.keys():
            if before[host] > now:
                for removed in self.removal_listeners:
                    removed(host)

    def refresh(self) -> bool:
        """Reload if another process changed the database; True if it did."""
        try:
            version = self.store.data_version()
        except sqlite3.Error:
            return False
        if version == self._version:
            return False
        self._load()
        return True

    def purge(self) -> int:
        """Delete expired bans from memory and the database."""
        now = self._clock.seconds()
        expired = [h for h, until in self._bans.items() if until <= now]
        for host in expired:
            del self._bans[host]
            self._persisted.pop(host, None)
        self._write(lambda: self.store.purge(now))
        self._recount()
        self._last_purge = now
        if expired:
            _log.info("At least 1 DENY_TIME has expired, global_no_access"
                      " list updated", event=events.EV_BAN, action="expire",
                      hosts=expired)
            if not self._bans:
                _log.info("global_no_access list is empty.",
                          event=events.EV_BAN, action="empty")
        return len(expired)

    def _tick(self) -> None:
        self.refresh()
        if self._clock.seconds() - self._last_purge >= self._purge_interval:
            self.purge()

    def start(self) -> None:
        """Start polling the database (idempotent)."""
        if not self._poll.running:
            self._poll.start(self._poll_interval, now=False)

    def stop(self) -> None:
        """Stop polling and close the database."""
        if self._poll.running:
            self._poll.stop()
        self.store.close()

"""
The global ban list that SENSOR services fill (xinetd's global_no_access).

A hit on a sensor bans the source's canonical address from every service,
TCP and UDP, for the sensor's ``deny_time`` minutes (``FOREVER``: until
removed; 0/``NEVER``: no ban).  Unlike xinetd, a repeat hit extends the ban,
and bans are kept in SQLite (``banstore``) so they survive reload and
restart.

The list in memory is what is enforced, and what ``superd status`` shows
(``entries``): lookups never touch SQL, and the file is written by
``superd.access.bandb`` on a thread of its own -- a locked, read-only or
damaged file leaves every ban in force (kept in memory, the database
``degraded``).  A flood of hits on a sensor writes (and logs) an extension
only once it has grown by a minute; once a second the database is checked
for changes made by ``superd bans --offline`` and, once a minute, expired
bans are purged.  Expired bans are also dropped lazily when looked up.

The list holds at most ``MAX_BANS`` sources.  When it is full a new ban
still goes in: the ban that makes room is a fleet one (``merge``, shared
through Redis) first, the soonest to end first; then this host's own,
soonest to end first.  Bans made by hand (``superd bans``) are never pushed
out, and a fleet ban never pushes out one made here -- so nothing said on
the shared channel can stop a local sensor from banning.

A sensor with ``v6_source_prefix`` under 128 bans an IPv6 source's whole
network of that length (the key ``2001:db8:1:2::/64``), which every service
then refuses, whatever its own prefix: how wide a ban is, is the sensor's
to decide.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from superd.access.bandb import BanDatabase
from superd.access.banrecord import Ban
from superd.access.prefixes import network_length, source_key
from superd.config.model import FOREVER
from superd.observe import events

if TYPE_CHECKING:
    from superd.access.banstore import BanStore

__all__ = ["MAX_BANS", "OPERATOR_SERVICE", "BanList"]

_log = Logger(namespace="superd")

#: A bound on memory when a (spoofed) UDP flood hits a sensor.
MAX_BANS = 100_000
#: Extensions of a ban are written (and logged) when they add this much.
PERSIST_STEP = 60.0
#: The service recorded with bans made by hand: they are never evicted.
OPERATOR_SERVICE = "superd bans"
#: Seconds between two log lines about fleet bans refused by a full list.
FULL_LOG_INTERVAL = 60.0

#: (expires, host): the eviction order of one kind of ban.
_Heap = list[tuple[float, str]]


class BanList:
    """Banned sources: memory for lookups (and the truth), SQLite behind."""

    def __init__(self, store: BanStore | BanDatabase, clock: Any, *,
                 poll_interval: float = 1.0,
                 purge_interval: float = 60.0) -> None:
        if not isinstance(store, BanDatabase):
            store = BanDatabase.of_store(store, clock)
        #: The file behind the list (its state: ``database.state``).
        self.database = store
        self._clock = clock
        self._bans: dict[str, float] = {}
        #: The prefix lengths of the network bans (a length whose last ban
        #: went may stay until the next purge: it only costs a probe).
        self._lengths: frozenset[int] = frozenset()
        #: What is (to be) stored per host: when it was added, by which
        #: service, hits, whether it came from the fleet.
        self._info: dict[str, Ban] = {}
        #: The expiry last written to the database, per host.
        self._persisted: dict[str, float] = {}
        #: Eviction candidates, soonest to end first (entries that no longer
        #: match the list are skipped when popped).
        self._remote_heap: _Heap = []
        self._local_heap: _Heap = []
        #: Bans pushed out and refused because the list was full, by kind:
        #: ``evicted_remote``, ``evicted_local``, ``refused_remote``, ``refused``.
        self.counts: dict[str, int] = dict.fromkeys(
            ("evicted_remote", "evicted_local", "refused_remote", "refused"), 0)
        self._full_logged_at = -math.inf
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
        self._loads = 0
        self._poll = LoopingCall(self._tick)
        self._poll.clock = clock
        self._poll_interval = poll_interval
        self._purge_interval = purge_interval
        self._last_purge = clock.seconds()
        self.database.on_loaded = self._loaded
        self._loaded(self.database.load_now(), after_outage=False)

    @property
    def store(self) -> BanStore | None:
        """The open database (None while it is degraded).  Only the database
        worker may use it once the list is started; read ``entries``."""
        return self.database.store

    def __len__(self) -> int:
        return len(self._bans)

    @property
    def full(self) -> bool:
        """True when a new ban needs another to make room."""
        return len(self._bans) >= MAX_BANS

    def is_banned(self, host: str) -> bool:
        """True while ``host`` (canonical) is banned; drops an expired ban."""
        expires = self._bans.get(host)
        if expires is None:
            if self._lengths:
                return self.covering(host) is not None
            return False
        if expires > self._clock.seconds():
            return True
        self._drop_expired(host)
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
        self._drop_expired(key)
        return False

    def _drop_expired(self, key: str) -> None:
        # Its row goes with the database's periodic purge.
        del self._bans[key]
        self._info.pop(key, None)
        self._persisted.pop(key, None)

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

    def is_remote(self, host: str) -> bool:
        """True while ``host`` is banned by the fleet only (``merge``), not by
        this host's sensors or operator."""
        info = self._info.get(host)
        return info is not None and info.remote and self.is_banned(host)

    def entry(self, host: str) -> Ban | None:
        """The ban in force that covers ``host`` (as ``entries`` lists it: its
        address or network), None if not banned."""
        key = self.covering(host)
        if key is None:
            return None
        until = self._bans[key]
        info = self._info.get(key) or Ban(key, None, self._clock.seconds())
        return attrs.evolve(info, expires=None if math.isinf(until) else until)

    def entries(self) -> list[Ban]:
        """Every ban in force, by host: what is enforced, with when it ends
        (``expires`` None: never), when it was added, by which service, its
        hits and whether it came from the fleet (``remote``)."""
        now = self._clock.seconds()
        found = []
        for host in sorted(self._bans):
            until = self._bans[host]
            if until <= now:
                continue
            info = self._info.get(host) or Ban(host, None, now)
            found.append(attrs.evolve(info, expires=None if math.isinf(until) else until))
        return found

    def ban(self, host: str, minutes: int, service_id: str, *,
            source: str = "sensor") -> None:
        """Ban ``host`` for ``minutes`` (FOREVER, or 0 for no ban), or extend;
        ``source`` (``sensor``, ``operator``) says who, in the log."""
        if minutes == 0:
            return
        now = self._clock.seconds()
        until = math.inf if minutes == FOREVER else now + 60.0 * minutes
        previous = self._bans.get(host)
        extended = previous is not None and previous > now
        if not extended and not self._make_room(now, None):
            self.counts["refused"] += 1
            _log.error("ban list full; not banning {peer_host}",
                       event=events.EV_BAN, peer_host=host, action="full")
            return
        expires = self._bans[host] = max(until, previous or 0.0) if extended else until
        self._note(host)
        info = self._info.get(host) if extended else None
        was_remote = info is not None and info.remote
        if extended and not was_remote \
                and expires - self._persisted.get(host, 0.0) < PERSIST_STEP:
            # A flood of hits on a sensor must not become a flood of
            # database writes and log lines: the extension is kept in memory
            # and written once it has grown by PERSIST_STEP seconds.
            self._index(host, expires, remote=False, service=service_id)
            return
        self._persisted[host] = expires
        self._store(host, expires, service_id, now, remote=False, old=info)
        self._log_ban(host, minutes, service_id, extended, source)
        for listener in self.listeners:
            listener(host, expires, service_id)
        if not extended:
            self._started(host)

    def merge(self, host: str, expires: float, service_id: str) -> bool:
        """
        Apply a ban made elsewhere (absolute ``expires``; ``math.inf``: never):
        True if it bans ``host`` here or extends its ban.  An expired one is
        ignored, never resurrected; in a full list it only replaces a fleet
        ban that ends sooner.  Listeners are not told.
        """
        now = self._clock.seconds()
        previous = self._bans.get(host)
        if expires <= now or (previous is not None and previous >= expires):
            return False
        live = previous is not None and previous > now
        if not live and not self._make_room(now, expires):
            self.counts["refused_remote"] += 1
            self._log_full_for_fleet(host, now)
            return False
        info = self._info.get(host) if live else None
        # A ban made here stays this host's (and its service) when the fleet
        # extends it: it keeps its precedence over fleet bans.
        remote = info is None or info.remote
        self._bans[host] = self._persisted[host] = expires
        self._note(host)
        self._store(host, expires, service_id if remote or info is None else info.service,
                    now, remote=remote, old=info)
        if not live:
            self._started(host)
        return True

    def _started(self, host: str) -> None:
        for listener in tuple(self.new_ban_listeners):
            listener(host)

    def unban(self, host: str) -> bool:
        """Lift the ban of ``host``; True if there was one."""
        present = host in self._bans
        self._forget(host)
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

    def _forget(self, host: str) -> None:
        self._bans.pop(host, None)
        self._info.pop(host, None)
        self._persisted.pop(host, None)
        self.database.save(host, None)

    def _store(self, host: str, expires: float, service_id: str, now: float, *,
               remote: bool, old: Ban | None) -> None:
        ban = Ban(host, None if math.isinf(expires) else expires,
                  now if old is None else old.added, service_id,
                  1 if old is None else old.hits + 1, remote)
        self._info[host] = ban
        self._index(host, expires, remote=remote, service=service_id)
        self.database.save(host, ban)

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

    # -- a full list -------------------------------------------------------

    def _index(self, host: str, expires: float, *, remote: bool, service: str) -> None:
        """Make ``host``'s ban (as it now is) findable for eviction."""
        if remote:
            heapq.heappush(self._remote_heap, (expires, host))
        elif service != OPERATOR_SERVICE:
            heapq.heappush(self._local_heap, (expires, host))
        # Stale entries pile up as bans are extended: rebuild now and then.
        if len(self._remote_heap) + len(self._local_heap) > 2 * len(self._bans) + 1024:
            self._reindex()

    def _reindex(self) -> None:
        remote: _Heap = []
        local: _Heap = []
        for host, expires in self._bans.items():
            info = self._info.get(host)
            if info is not None and info.remote:
                remote.append((expires, host))
            elif info is not None and info.service != OPERATOR_SERVICE:
                local.append((expires, host))
        heapq.heapify(remote)
        heapq.heapify(local)
        self._remote_heap, self._local_heap = remote, local

    def _evictable(self, heap: _Heap, remote: bool) -> tuple[float, str] | None:
        """The soonest-ending ban of ``heap`` still in the list as indexed."""
        while heap:
            expires, host = heap[0]
            info = self._info.get(host)
            if (self._bans.get(host) == expires and info is not None
                    and info.remote == remote
                    and (remote or info.service != OPERATOR_SERVICE)):
                return expires, host
            heapq.heappop(heap)
        return None

    def _make_room(self, now: float, for_remote: float | None) -> bool:
        """Room for one more ban: True if there is or was made.  For a ban of
        this host (``for_remote`` None) any fleet ban goes first, then its
        own soonest-ending; for a fleet ban ending at ``for_remote``, only a
        fleet ban that ends sooner."""
        if len(self._bans) < MAX_BANS:
            return True
        victim = self._evictable(self._remote_heap, True)
        kind = "remote"
        if victim is None and for_remote is None:
            victim, kind = self._evictable(self._local_heap, False), "local"
        if victim is None:
            return False
        expires, host = victim
        if expires > now and for_remote is not None and expires >= for_remote:
            return False
        self._forget(host)
        if expires > now:
            self.counts[f"evicted_{kind}"] += 1
            _log.info("ban list full: evicting the {kind} ban of {peer_host} to make room",
                      event=events.EV_BAN, action="evict", kind=kind, peer_host=host)
        return True

    def _log_full_for_fleet(self, host: str, now: float) -> None:
        """A line a minute at most: the fleet may send bans faster than that."""
        if now - self._full_logged_at < FULL_LOG_INTERVAL:
            return
        self._full_logged_at = now
        _log.warn("ban list full of this host's bans; not adding the fleet's ban of"
                  " {peer_host} ({count} fleet bans refused so far)",
                  event=events.EV_BAN, action="full_remote", peer_host=host,
                  count=self.counts["refused_remote"])

    # -- synchronisation with the database ------------------------------

    def _loaded(self, stored: list[Ban], after_outage: bool) -> None:
        """
        Take in the database's rows: at start, and when another process
        changed the file.  Changes of ours not yet written win over the file.
        After an outage the list in force wins too: a ban the file lacks is
        written back, never lifted (lifts made offline during an outage are
        lost -- the safe way round).
        """
        self._loads += 1
        now = self._clock.seconds()
        before = self._bans
        fresh = {ban.host: ban for ban in stored
                 if ban.expires is None or ban.expires > now}
        for host, change in self.database.unsaved.items():
            if change is None:
                fresh.pop(host, None)
            else:
                fresh[host] = change
        rewrite = []
        if after_outage:
            for host, expires in before.items():
                info = self._info.get(host)
                if host not in fresh and expires > now and info is not None:
                    fresh[host] = attrs.evolve(
                        info, expires=None if math.isinf(expires) else expires)
                    rewrite.append(fresh[host])
        if len(fresh) > MAX_BANS:
            # Another process stored more than the list holds: this host's
            # bans first, the longest first.
            kept = sorted(fresh.values(), key=lambda b: (
                b.remote, -(math.inf if b.expires is None else b.expires)))[:MAX_BANS]
            fresh = {ban.host: ban for ban in kept}
        self._info = fresh
        self._bans = {host: math.inf if ban.expires is None else ban.expires
                      for host, ban in fresh.items()}
        for host, expires in before.items():
            # Unwritten extensions (PERSIST_STEP) are not in the file.
            if host in self._bans and expires > self._bans[host]:
                self._bans[host] = expires
        self._persisted = {host: math.inf if ban.expires is None else ban.expires
                           for host, ban in fresh.items()}
        self._reindex()
        self._recount()
        for ban in rewrite:
            self.database.save(ban.host, ban)
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
        """Look for another process's changes now; True if some were taken
        in at once (with an inline worker; a thread takes them in later)."""
        loads = self._loads
        self.database.refresh()
        return self._loads != loads

    def purge(self) -> int:
        """Drop expired bans from memory and (soon) the database."""
        now = self._clock.seconds()
        expired = [h for h, until in self._bans.items() if until <= now]
        for host in expired:
            del self._bans[host]
            self._info.pop(host, None)
            self._persisted.pop(host, None)
        self.database.purge(now)
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
        """Start the database worker and polling (idempotent)."""
        if not self._poll.running:
            self.database.start()
            self._poll.start(self._poll_interval, now=False)

    def stop(self) -> None:
        """Stop polling, write what is unsaved and close the database."""
        if self._poll.running:
            self._poll.stop()
        self.database.stop()

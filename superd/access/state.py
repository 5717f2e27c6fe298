"""
The access layer's daemon-wide state, kept for the life of the process and
across reloads: sensor bans, the hosts.allow/deny tables, live sessions and
their counts, cps counters, the name cache, compiled policies and the
rate-limited FAIL logs.

It is also where live sessions are ended daemon-wide (``end_sessions``),
whatever serves them: a new ban ends the banned source's sessions on every
service (unless ``ban_ends_sessions = no``), and a reload ends those its new
rules refuse (``superd.access.recheck``).

``open_access`` builds the daemon's (opening the ban database under the
state directory); unit tests build an ``AccessState`` directly with the
parts they need.  It is a Twisted ``Service``: the daemon's service tree
starts its timers and watches and stops them, after the listeners closed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable

from twisted.application.service import Service
from twisted.logger import Logger

from superd.access.bandb import BanDatabase, InlineWorker, ThreadWorker, Worker
from superd.access.banrecord import db_path
from superd.access.bans import BanList
from superd.access.changewatch import ChangeWatch
from superd.access.decision import Policy
from superd.access.hostsaccess import HostsAccess
from superd.access.kerneldrop import KernelDrop
from superd.access.limits import SessionCounter
from superd.access.loadavg import CachedLoad, read_loadavg
from superd.access.prefixes import network_length, source_key
from superd.access.rate import ConnectionRate
from superd.access.refusals import RefusalLog
from superd.access.resolver import NameResolver, thread_runner
from superd.access.times import LocalTime
from superd.config.model import CPS, ServiceConfig
from superd.core.runtime import Runtime
from superd.core.session import Session
from superd.observe import events
from superd.observe.counters import Counters
from superd.proc.table import ProcessTable

__all__ = ["AccessState", "open_access"]

_log = Logger(namespace="superd")


class AccessState(Service):
    """What the access layer keeps for the life of the process."""

    name = "access"

    def __init__(self, runtime: Runtime, *, bans: BanList | None = None,
                 hosts: HostsAccess | None = None, processes: ProcessTable | None = None,
                 counters: Counters | None = None, resolver: NameResolver | None = None,
                 load: CachedLoad | None = None, localtime: LocalTime = time.localtime,
                 hosts_changes: ChangeWatch | None = None,
                 kernel_drop: KernelDrop | None = None) -> None:
        self.runtime = runtime
        #: SENSOR bans (in memory only unless given one with a database).
        self.bans = bans if bans is not None else BanList(
            BanDatabase(":memory:", runtime.reactor, InlineWorker()), runtime.reactor)
        #: hosts.allow/deny (None: not consulted).
        self.hosts = hosts
        #: Every running child, for ``--limit`` (None: no children here).
        self.processes = processes
        #: Accepted and refused counts per block, for status and metrics.
        self.counters = counters if counters is not None else Counters()
        #: Live sessions per block and per source (instances, per_source).
        self.counter = SessionCounter()
        self.resolver = resolver
        self.load = load if load is not None else CachedLoad()
        self.localtime = localtime
        #: (block key, cps) -> that block's cps counter.
        self.rates: dict[tuple[str, CPS], ConnectionRate] = {}
        #: (block key, sessions) -> (the ServiceConfig they were built for, policies).
        self.compiled: dict[str, tuple[ServiceConfig, list[Policy]]] = {}
        #: FAIL lines of refused connections: a few per source and reason.
        self.stream_refusals = RefusalLog()
        #: FAIL lines of refused datagrams: one per source address and port a
        #: minute, as xinetd's DGRAM_IGNORE_TIME.
        self.dgram_refusals = RefusalLog(burst=1, window=60.0)
        #: Says when hosts.allow/deny may have changed (None: stat every time);
        #: its inotify descriptor is closed when the service stops.
        self.hosts_changes = hosts_changes
        #: Drops hammering banned sources in the kernel (None: not used).
        self.kernel_drop = kernel_drop
        #: Whether a new ban ends the source's live sessions (the
        #: configuration's ``ban_ends_sessions``; set at start and reload).
        self.ban_ends_sessions = True
        self.bans.new_ban_listeners.append(self._banned)

    def end_sessions(self, which: Callable[[Session], bool], reason: str) -> int:
        """
        End every live session ``which`` selects, of any service, for
        ``reason`` (``events.END_BANNED``, ``events.END_RECONFIGURED``):
        in-process connections are aborted, children's process groups get
        SIGTERM (SIGKILL after ``--grace``).  Each one's EXIT line, logged
        when it is gone, carries the reason.  Returns how many were ended.
        """
        return sum(self.end_session(session, reason)
                   for session in self.counter.sessions() if which(session))

    def end_session(self, session: Session, reason: str) -> bool:
        """End one live session for ``reason`` (see ``end_sessions``); True
        if this ended it, False if it was over or being ended already."""
        if not session.terminate(reason):
            return False
        self.counters.for_block(session.service_id, session.block).end(reason)
        return True

    def _banned(self, host: str) -> None:
        """A ban started: end the source's live sessions (unless configured not to)."""
        if not self.ban_ends_sessions:
            return
        ended = sum(self.end_session(session, events.END_BANNED)
                    for session in self._sessions_of(host))
        if ended:
            _log.info("ending {count} open sessions of banned {peer_host}",
                      event=events.EV_SESSIONS_ENDED, reason=events.END_BANNED,
                      count=ended, peer_host=host)

    def _sessions_of(self, banned: str) -> tuple[Session, ...]:
        """The live sessions a ban covers: its address's, or, for a network
        ban (``v6_source_prefix``), those of every address in it."""
        length = network_length(banned)
        if length is None:
            return self.counter.from_host(banned)
        return tuple(session for session in self.counter.sessions()
                     if session.peer is not None
                     and source_key(session.peer.host, length) == banned)

    def rate_for(self, service: ServiceConfig) -> ConnectionRate:
        """The cps counter of the service's block, kept across reloads while
        cps is unchanged (each block has its own, as each xinetd entry does)."""
        key = (service.block_key, service.cps)
        rate = self.rates.get(key)
        if rate is None:
            rate = self.rates[key] = ConnectionRate(service.id, service.cps,
                                                    self.runtime.reactor)
        return rate

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        reactor = self.runtime.reactor
        self.stream_refusals.start(reactor)
        self.dgram_refusals.start(reactor)
        self.bans.start()
        if self.kernel_drop is not None:
            self.kernel_drop.start()

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.bans.stop()
        for rate in self.rates.values():
            rate.stop()
        now = self.runtime.seconds()
        for refusals in (self.stream_refusals, self.dgram_refusals):
            refusals.stop()
            refusals.sweep(now, everything=True)  # say what was not logged
        if self.kernel_drop is not None:
            self.kernel_drop.stop()
        if self.hosts_changes is not None:
            self.hosts_changes.stop()


def _open_bans(runtime: Runtime, worker: Worker | None) -> BanList:
    """The list in force, from the state directory's database, which a thread
    of its own writes (a database that cannot be used now is logged once,
    bans are kept in memory, and it is retried: ``superd.access.bandb``)."""
    reactor = runtime.reactor
    database = BanDatabase(db_path(runtime.options.state_dir), reactor,
                           worker if worker is not None else ThreadWorker(reactor))
    return BanList(database, reactor)


def open_access(runtime: Runtime, processes: ProcessTable, counters: Counters,
                listening: Callable[[], Iterable[socket.socket]], *,
                resolver: NameResolver | None = None,
                load_reader: Callable[[], float] = read_loadavg,
                localtime: LocalTime = time.localtime,
                ban_worker: Worker | None = None) -> AccessState:
    """The daemon's access state: bans from the state directory's database
    (written by ``ban_worker``, default a thread of its own), the hosts files
    of the command line, names resolved in threads, and the kernel's filters
    on the sockets ``listening`` returns."""
    reactor = runtime.reactor
    if resolver is None:
        resolver = NameResolver(reactor, thread_runner(reactor))
    bans = _open_bans(runtime, ban_worker)
    paths = (runtime.options.hosts_allow, runtime.options.hosts_deny)
    changes = ChangeWatch.start(reactor, paths, reactor.seconds)
    return AccessState(
        runtime, bans=bans, hosts=HostsAccess(*paths, resolver, changes),
        processes=processes, counters=counters, resolver=resolver,
        load=CachedLoad(load_reader), localtime=localtime, hosts_changes=changes,
        kernel_drop=KernelDrop(reactor, listening, bans.is_banned))

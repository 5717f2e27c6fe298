"""
The daemon-wide access state, attached to a ``Runtime`` once per process.

``attach`` opens the ban database under ``runtime.options.state_dir`` and
sets ``runtime.bans`` and ``runtime.hosts_access``; everything else the
access layer keeps across reloads (session counts, cps counters, the name
cache, compiled policies) lives in an ``AccessState`` found through
``state_of(runtime)``.  ``Runtime`` has no slot for it, so it is kept in a
weak mapping keyed by the runtime.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger

from superd.access.bans import BanList
from superd.access.banstore import BanStore, db_path
from superd.access.changewatch import ChangeWatch
from superd.access.hostsaccess import HostsAccess
from superd.access.kerneldrop import KernelDrop, listening_sockets
from superd.access.limits import SessionCounter
from superd.access.loadavg import CachedLoad, read_loadavg
from superd.access.rate import ConnectionRate
from superd.access.refusals import RefusalLog
from superd.access.resolver import NameResolver, thread_runner
from superd.access.times import LocalTime
from superd.config.model import CPS, ServiceConfig
from superd.core.runtime import Runtime
from superd.observe import events

__all__ = ["AccessState", "attach", "detach", "state_of"]

_log = Logger(namespace="superd")


@attrs.define(eq=False)
class AccessState:
    """What the access layer keeps for the life of the process."""

    counter: SessionCounter = attrs.field(factory=SessionCounter)
    resolver: NameResolver | None = None
    load: CachedLoad = attrs.field(factory=CachedLoad)
    localtime: LocalTime = time.localtime
    #: (block key, cps) -> that block's cps counter.
    rates: dict[tuple[str, CPS], ConnectionRate] = attrs.field(factory=dict)
    #: block key -> (the ServiceConfig they were built for, policies).
    compiled: dict[str, tuple[object, Any]] = attrs.field(factory=dict)
    #: FAIL lines of refused connections: a few per source and reason.
    stream_refusals: RefusalLog = attrs.field(factory=RefusalLog)
    #: FAIL lines of refused datagrams: one per source address and port a
    #: minute, as xinetd's DGRAM_IGNORE_TIME.
    dgram_refusals: RefusalLog = attrs.field(
        factory=lambda: RefusalLog(burst=1, window=60.0))
    #: Drops hammering banned sources in the kernel (None: not attached).
    kernel_drop: KernelDrop | None = None
    #: Says when hosts.allow/deny may have changed (None: stat every time).
    hosts_changes: ChangeWatch | None = None

    def rate_for(self, service: ServiceConfig, clock: Any) -> ConnectionRate:
        """The cps counter of the service's block, kept across reloads while
        cps is unchanged (each block has its own, as each xinetd entry does)."""
        key = (service.block_key, service.cps)
        rate = self.rates.get(key)
        if rate is None:
            rate = self.rates[key] = ConnectionRate(service.id, service.cps, clock)
        return rate


_states: weakref.WeakKeyDictionary[Runtime, AccessState] = (
    weakref.WeakKeyDictionary())


def state_of(runtime: Runtime) -> AccessState:
    """The runtime's access state (a default one if ``attach`` was not called)."""
    state = _states.get(runtime)
    if state is None:
        state = _states[runtime] = AccessState()
    return state


def _open_bans(runtime: Runtime) -> BanList:
    path = db_path(runtime.options.state_dir)
    try:
        store = BanStore(path)
    except Exception as e:  # sqlite3.Error, OSError: keep banning in memory
        _log.error("cannot open the ban database {path}: {error}; bans will"
                   " not survive a restart", event=events.EV_BAN,
                   action="store_error", path=path, error=str(e))
        store = BanStore(":memory:")
    return BanList(store, runtime.reactor)


def attach(runtime: Runtime, *, resolver: NameResolver | None = None,
           load_reader: Callable[[], float] = read_loadavg,
           localtime: LocalTime = time.localtime) -> None:
    """Set ``runtime.bans`` and ``runtime.hosts_access`` and start polling."""
    if resolver is None:
        resolver = NameResolver(runtime.reactor, thread_runner(runtime.reactor))
    state = _states[runtime] = AccessState(resolver=resolver,
                                           load=CachedLoad(load_reader),
                                           localtime=localtime)
    state.stream_refusals.start(runtime.reactor)
    state.dgram_refusals.start(runtime.reactor)
    bans = _open_bans(runtime)
    runtime.bans = bans
    hosts = (runtime.options.hosts_allow, runtime.options.hosts_deny)
    state.hosts_changes = ChangeWatch.start(runtime.reactor, hosts,
                                            runtime.reactor.seconds)
    runtime.hosts_access = HostsAccess(*hosts, resolver, state.hosts_changes)
    bans.start()
    state.kernel_drop = KernelDrop(runtime.reactor,
                                   listening_sockets(runtime.reactor),
                                   bans.is_banned)
    state.kernel_drop.start()
    trigger = getattr(runtime.reactor, "addSystemEventTrigger", None)
    if trigger is not None:
        trigger("after", "shutdown", detach, runtime)


def detach(runtime: Runtime) -> None:
    """Stop polling the ban database and close it (idempotent)."""
    bans = runtime.bans
    if isinstance(bans, BanList):
        bans.stop()
    state = state_of(runtime)
    for rate in state.rates.values():
        rate.stop()
    now = runtime.seconds()
    for refusals in (state.stream_refusals, state.dgram_refusals):
        refusals.stop()
        refusals.sweep(now, everything=True)  # say what was not logged
    if state.kernel_drop is not None:
        state.kernel_drop.stop()
    if state.hosts_changes is not None:
        state.hosts_changes.stop()
        state.hosts_changes = None

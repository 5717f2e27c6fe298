"""
What every part of superd is given instead of reaching for a global: the
reactor, and the daemon-wide settings from the command line.

The tap builds one ``Runtime`` from the real reactor; unit tests build one
from ``twisted.internet.testing.MemoryReactorClock``.  The daemon's other
long-lived collaborators (the access state with its bans, the table of
running children, the counters) are typed objects of their own layers,
built in one place by ``superd.daemon.parts`` and passed to what needs them.
"""

from __future__ import annotations

from typing import Optional

import attrs
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorProcess,
    IReactorSocket,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUDP,
    IReactorUNIX,
)

from superd.core.paths import ROOT_STATE_DIR

__all__ = ["IReactor", "Runtime", "RuntimeOptions"]


class IReactor(IReactorCore, IReactorTime, IReactorTCP, IReactorUDP, IReactorUNIX,
               IReactorSocket, IReactorProcess, IReactorFDSet, IReactorThreads):
    """Everything superd asks of its reactor (Twisted's default reactor on
    Linux provides all of it)."""


@attrs.frozen
class RuntimeOptions:
    """Daemon-wide settings from the command line."""

    #: Where persistent state (bans database, control socket) lives.
    state_dir: str = ROOT_STATE_DIR
    #: ``--limit N``: cap on concurrently running children of all services.
    limit: Optional[int] = None
    #: Seconds between SIGTERM and SIGKILL when stopping children.
    grace: float = 5.0
    hosts_allow: str = "/etc/hosts.allow"
    hosts_deny: str = "/etc/hosts.deny"
    #: The RFC 1413 port queried for USERID (tests point it elsewhere).
    ident_port: int = 113
    #: Listen backlog for stream services.
    backlog: int = 1024
    #: The syslog identity of ``log_type = SYSLOG`` lines.
    syslog_ident: str = "superd"
    #: ``--cgroup``: where children's cgroups go (``auto``, ``none`` or a
    #: cgroup v2 directory; see ``superd.proc.cgroups``).
    cgroup: str = "auto"
    #: ``--spawn-helpers``: helper processes starting children (0: none;
    #: see ``superd.proc.spawnhelper``).
    spawn_helpers: int = 0


@attrs.frozen(eq=False)
class Runtime:
    """The reactor and the command-line settings of one superd process."""

    reactor: IReactor
    options: RuntimeOptions = RuntimeOptions()

    def seconds(self) -> float:
        """The injected clock's current time."""
        return float(self.reactor.seconds())

"""
Daemon-wide collaborators shared by every service: the injected reactor, the
options given on the command line, and the state that outlives one service
(sensor bans, the hosts.allow/deny tables, the table of running children).

One ``Runtime`` is built by the tap and handed to every service, handler and
access factory; nothing in ``superd/`` reaches for a global instead.  It also
survives reloads, which is how bans and child accounting outlive them.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

__all__ = ["Runtime", "RuntimeOptions"]


@attrs.frozen
class RuntimeOptions:
    """Daemon-wide settings from the command line."""

    #: Where persistent state (bans database, control socket) lives.
    state_dir: str = "/var/lib/superd"
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


@attrs.define(eq=False)
class Runtime:
    """The shared, injected collaborators of one superd process."""

    #: Provides IReactorTime, IReactorTCP, IReactorUDP, IReactorProcess,
    #: IReactorFDSet (a MemoryReactorClock plus fakes in unit tests).
    reactor: Any
    options: RuntimeOptions = RuntimeOptions()
    #: superd.access.bans.BanList, set up by the tap (sensor bans).
    bans: Any = None
    #: superd.access.hostsaccess tables (hosts.allow/deny), set up by the tap.
    hosts_access: Any = None
    #: superd.spawn process table: running children of every service.
    processes: Any = None
    #: Running children of all services together, for ``--limit``; the
    #: spawner increments it at spawn and decrements it when a child is reaped.
    running_children: int = 0

    def seconds(self) -> float:
        """The injected clock's current time."""
        return float(self.reactor.seconds())

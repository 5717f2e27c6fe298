"""
Concurrency limits: ``instances``, ``per_source`` and the global ``--limit``.

A session counts from admission until ``session.end()`` -- a live connection
for an in-process builtin, a running child for an external server -- so one
counter serves both.  It counts under its configuration block
(``Session.block``), not its id: two blocks may share an id (the seed's two
``service ssh`` on different binds), and xinetd limits each one on its own.
The counter belongs to the runtime, not to a service's factory, so sessions
admitted before a reload still count after it.
Sources are counted by canonical address (``::ffff:a.b.c.d`` is
``a.b.c.d``).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from superd.access.decision import ALLOW, Decision, deny
from superd.core.session import Peer, Session
from superd.observe import events
from superd.proc.table import ProcessTable

__all__ = [
    "GlobalLimitPolicy",
    "InstancesPolicy",
    "PerSourcePolicy",
    "SessionCounter",
]


class SessionCounter:
    """Live sessions per configuration block and per (block, source)."""

    def __init__(self) -> None:
        self._services: dict[str, int] = {}
        self._sources: dict[tuple[str, str], int] = {}
        #: Deferreds of ``when_idle``, fired when the last session ends.
        self._idle: list[Deferred[None]] = []

    def running(self, block: str) -> int:
        """Live sessions of ``block`` (a ``ServiceConfig.block_key``)."""
        return self._services.get(block, 0)

    def from_source(self, block: str, host: str) -> int:
        """Live sessions of ``block`` from ``host``."""
        return self._sources.get((block, host), 0)

    def acquire(self, session: Session) -> None:
        """Count ``session`` until it ends."""
        sid = session.block
        key = (sid, "" if session.peer is None else session.peer.host)
        services, sources = self._services, self._sources
        services[sid] = services.get(sid, 0) + 1
        sources[key] = sources.get(key, 0) + 1
        session.on_end(self._release)

    def live(self) -> int:
        """Live sessions of every service."""
        return sum(self._services.values())

    def when_idle(self) -> Deferred[None]:
        """Fires once no session is live (at once if none is): stop's drain."""
        idle: Deferred[None] = Deferred(self._idle.remove)
        if self._services:
            self._idle.append(idle)
        else:
            idle.callback(None)
        return idle

    def _release(self, session: Session) -> None:
        # Runs once per connection: the two decrements are written out.
        sid = session.block
        services, sources = self._services, self._sources
        left = services.get(sid, 0) - 1
        if left > 0:
            services[sid] = left
        else:
            services.pop(sid, None)
        key = (sid, "" if session.peer is None else session.peer.host)
        left = sources.get(key, 0) - 1
        if left > 0:
            sources[key] = left
        else:
            sources.pop(key, None)
        if self._idle and not services:
            waiting, self._idle = self._idle, []
            for idle in waiting:
                idle.callback(None)


class _SessionLimit:
    """A limit of ``limit`` live sessions of one block, read from ``counter``."""

    def __init__(self, block: str, limit: int,
                 counter: SessionCounter) -> None:
        self.block = block
        self.limit = limit
        self._counter = counter


class InstancesPolicy(_SessionLimit):
    """Denies when the service's block already has ``limit`` live sessions."""

    reason = events.REASON_SERVICE_LIMIT

    def check(self, peer: Peer, now: float) -> Decision:
        if self._counter.running(self.block) >= self.limit:
            return deny(events.REASON_SERVICE_LIMIT)
        return ALLOW


class PerSourcePolicy(_SessionLimit):
    """Denies when the peer's address already has ``limit`` live sessions."""

    reason = events.REASON_PER_SOURCE

    def check(self, peer: Peer, now: float) -> Decision:
        if self._counter.from_source(self.block, peer.host) >= self.limit:
            return deny(events.REASON_PER_SOURCE)
        return ALLOW


class GlobalLimitPolicy:
    """Denies a spawning service while ``--limit`` children are running."""

    reason = events.REASON_PROCESS_LIMIT

    def __init__(self, limit: int, processes: ProcessTable) -> None:
        self.limit = limit
        self._processes = processes

    def check(self, peer: Peer, now: float) -> Decision:
        if self._processes.running >= self.limit:
            return deny(events.REASON_PROCESS_LIMIT)
        return ALLOW

"""
``cps MAX WAIT``: xinetd's connection-rate limit, counter for counter.

xinetd's algorithm on whole seconds of the
injected clock: a window of MAX seconds opens at the first connection; each
further connection inside it increments the count, and when
``count // max(1, elapsed)`` exceeds MAX the service is deactivated for WAIT
seconds.  The counter is not reset on reactivation, as in xinetd.  The log
lines are xinetd's.

One deliberate improvement: xinetd closes its listening socket while
deactivated (clients get ECONNREFUSED, the backlog is reset, and the socket
must be bound again, which can fail after privileges are dropped).  superd
keeps listening and refuses every connection at once, logging FAIL
``connections per second``.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from superd.access.decision import ALLOW, Decision, deny
from superd.config.model import CPS
from superd.core.session import Peer
from superd.observe import events

__all__ = ["ConnectionRate"]

_log = Logger(namespace="superd")
_DENY = deny(events.REASON_CPS)


class ConnectionRate:
    """The cps counter of one service, and its deactivation timer."""

    reason = events.REASON_CPS

    def __init__(self, service_id: str, cps: CPS, clock: Any) -> None:
        self.service_id = service_id
        self.cps = cps
        self._clock = clock
        self._count = 0
        self._window_start = 0
        self._restart: Any = None

    @property
    def deactivated(self) -> bool:
        """True while the service refuses everything for excess rate."""
        return self._restart is not None

    @property
    def reactivates_at(self) -> float | None:
        """When a deactivated service serves again (clock seconds), else None."""
        return None if self._restart is None else float(self._restart.getTime())

    def check(self, peer: Peer, now: float) -> Decision:
        if self._restart is not None:
            return _DENY
        if self.cps.max <= 0:
            return ALLOW
        second = int(now)
        elapsed = second - self._window_start
        if self._count == 0 or elapsed >= self.cps.max:
            self._count, self._window_start = 1, second
            return ALLOW
        self._count += 1
        if self._count // max(1, elapsed) > self.cps.max:
            self._deactivate()
            return _DENY
        return ALLOW

    def _deactivate(self) -> None:
        wait = self.cps.wait
        _log.warn(
            "Deactivating service {service_id} due to excessive incoming"
            " connections.  Restarting in {wait} seconds.",
            event=events.EV_LIMIT, service_id=self.service_id, wait=wait,
            limit="cps", active=False)
        self._restart = self._clock.callLater(wait, self._activate)

    def _activate(self) -> None:
        self._restart = None
        _log.warn("Activating service {service_id}", event=events.EV_LIMIT,
                   service_id=self.service_id, limit="cps", active=True)

    def stop(self) -> None:
        """Cancel a pending reactivation (the service is going away)."""
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None

"""
``max_load``: refuse while the one-minute load average is at or above it.

The load is read from ``/proc/loadavg`` through an injected reader, at most
once per second of the injected clock (a flood must not turn into a flood of
file reads).
"""

from __future__ import annotations

from collections.abc import Callable

from superd.access.decision import ALLOW, Decision, deny
from superd.core.session import Peer
from superd.observe import events

__all__ = ["CachedLoad", "LoadPolicy", "read_loadavg"]


def read_loadavg(path: str = "/proc/loadavg") -> float:
    """The one-minute load average (raises OSError/ValueError if unreadable)."""
    with open(path, encoding="ascii") as f:
        return float(f.read().split()[0])


class CachedLoad:
    """The load average, re-read at most every ``interval`` seconds."""

    def __init__(self, reader: Callable[[], float] = read_loadavg,
                 interval: float = 1.0) -> None:
        self._reader = reader
        self._interval = interval
        self._read_at: float | None = None
        self._value = 0.0

    def at(self, now: float) -> float:
        """The load at ``now`` (a cached reading if it is recent enough)."""
        if self._read_at is None or not 0 <= now - self._read_at < self._interval:
            self._value = self._reader()
            self._read_at = now
        return self._value


class LoadPolicy:
    """Denies peers while the load is at or above ``max_load`` (FAIL ``load``)."""

    reason = events.REASON_LOAD

    def __init__(self, max_load: float, load: CachedLoad) -> None:
        self.max_load = max_load
        self._load = load

    def check(self, peer: Peer, now: float) -> Decision:
        if self._load.at(now) >= self.max_load:
            return deny(events.REASON_LOAD)
        return ALLOW

"""
``access_times``: admit only inside the configured local-time windows.

As xinetd: local time, minute granularity, inclusive bounds.  Beyond xinetd:
``24:00`` ends a day, and an interval whose start is after its end wraps
past midnight (``22:00-06:00``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from superd.access.decision import ALLOW, Decision, deny
from superd.config.model import TimeInterval
from superd.core.session import Peer
from superd.observe import events

__all__ = ["TimePolicy", "inside", "local_minute"]

LocalTime = Callable[[float], time.struct_time]


def local_minute(now: float, localtime: LocalTime = time.localtime) -> int:
    """Minutes after local midnight at ``now`` (seconds since the epoch)."""
    moment = localtime(now)
    return moment.tm_hour * 60 + moment.tm_min


def inside(minute: int, intervals: Sequence[TimeInterval]) -> bool:
    """True when ``minute`` is inside any interval (bounds inclusive)."""
    for interval in intervals:
        if interval.start <= interval.end:
            if interval.start <= minute <= interval.end:
                return True
        elif minute >= interval.start or minute <= interval.end:
            return True
    return False


class TimePolicy:
    """Denies peers outside ``access_times`` (FAIL ``time``)."""

    reason = events.REASON_TIME

    def __init__(self, intervals: Sequence[TimeInterval],
                 localtime: LocalTime = time.localtime) -> None:
        self.intervals = tuple(intervals)
        self._localtime = localtime

    def check(self, peer: Peer, now: float) -> Decision:
        if inside(local_minute(now, self._localtime), self.intervals):
            return ALLOW
        return deny(events.REASON_TIME)

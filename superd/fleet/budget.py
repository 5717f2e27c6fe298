"""
A budget for what arrives on the shared ban channel.

Anyone who can publish on the channel could otherwise make every superd of
the fleet apply (and write, and log) bans as fast as Redis delivers them.
``MessageBudget`` is a token bucket on the injected clock: ``rate`` messages
a second on average, bursts of up to ``burst``.  Messages over the budget
are dropped unread; they, and malformed ones, are counted and reported
together once per ``interval`` -- never a log line per message.

A real fleet stays well inside the defaults: one ban per source that trips a
sensor anywhere, extensions at most once a minute per source.  A budget
cannot tell a real ban from a forged one; a channel anyone can publish on
is protected by Redis itself (``rediss://`` and an ACL user).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

__all__ = ["BURST", "RATE", "REPORT_INTERVAL", "MessageBudget"]

#: Messages a second, on average.
RATE = 200.0
#: Messages at once after a quiet spell (e.g. a scan that trips sensors on
#: many hosts of the fleet at the same moment).
BURST = 2000.0
#: Seconds between two reports of dropped and malformed messages.
REPORT_INTERVAL = 10.0


class MessageBudget:
    """Admits messages within a rate; counts (and reports) the rest."""

    def __init__(self, clock: Any, report: Callable[[int, int, float], None], *,
                 rate: float = RATE, burst: float = BURST,
                 interval: float = REPORT_INTERVAL) -> None:
        self._clock = clock
        self._report = report
        self.rate = rate
        self.burst = burst
        self._interval = interval
        self._tokens = burst
        self._last = clock.seconds()
        #: Counted since the last report.
        self.dropped = 0
        self.malformed = 0
        self._timer: Optional[Any] = None

    def take(self) -> bool:
        """True if one more message fits the budget now (and uses it up)."""
        now = self._clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.dropped += 1
        self._schedule()
        return False

    def bad(self) -> None:
        """Count a malformed message."""
        self.malformed += 1
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = self._clock.callLater(self._interval, self.flush)

    def flush(self) -> None:
        """Report what was counted since the last report, if anything."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.dropped or self.malformed:
            dropped, malformed, self.dropped, self.malformed = \
                self.dropped, self.malformed, 0, 0
            self._report(dropped, malformed, self._interval)

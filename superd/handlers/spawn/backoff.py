"""
The respawn guard of ``wait = yes`` services.

A ``wait = yes`` server that exits without taking its work off the socket
leaves it readable, so an inetd would start it again at once, in a tight
loop, as xinetd does.  superd instead waits 1 s, 2 s, 4 s ... (capped)
before listening again after each such quick, useless run, and forgets the
failures after a healthy one.
"""

from __future__ import annotations

import attrs

__all__ = ["RespawnGuard"]


@attrs.define
class RespawnGuard:
    """Decides how long to wait before the next child of one service."""

    #: A run shorter than this that served nothing counts as a failure.
    quick: float = 1.0
    first_delay: float = 1.0
    max_delay: float = 60.0
    #: Consecutive failed runs so far.
    failures: int = 0

    def after_run(self, duration: float, served: bool) -> float:
        """Seconds to wait before polling again after a child ended."""
        if served or duration >= self.quick:
            self.failures = 0
            return 0.0
        return self.failed()

    def failed(self) -> float:
        """Record a failed run (or a failed spawn); return the delay."""
        self.failures += 1
        return float(min(self.max_delay,
                         self.first_delay * 2 ** (self.failures - 1)))

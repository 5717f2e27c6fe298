"""
Whether a child is started on the reactor thread or by a spawn worker, when
superd runs without spawn helpers (``--spawn-helpers 0``, the default; see
``superd.proc.spawnhelper`` for the other way) and without its compiled
clone module (``superd.proc.clonespawn``, which waits for no exec at all).

``posix_spawn`` returns once the child has executed its program, so the
thread calling it waits for that exec.  While a CPU is free the wait is
short, and spawning on the reactor thread is the cheaper way: handing a
spawn to a worker thread costs more CPU than the spawn itself (two threads
running Python take turns with the interpreter lock, each turn a futex wake
and a context switch).  When the machine is busier than its CPUs, the child
waits for one before it can exec, and the reactor thread would wait with it,
however many other connections are ready: then the workers
(``superd.proc.spawnpool``) spawn, and the reactor goes on.

``ExecWait`` keeps a moving average of how long spawns on the reactor thread
waited and switches to the workers once it passes ``SLOW``, back below half
of it.  Each wait counts for at most ``4 * SLOW``, so that one exec that
was slow for its own reasons (a large program, a cold cache) does not move
the spawns by itself.  While the workers spawn, one spawn every ``PROBE_INTERVAL`` seconds
is still made on the reactor thread, to see whether the waits got short
again; so the reactor thread waits for at most one slow exec per interval.
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["PROBE_INTERVAL", "SLOW", "WEIGHT", "ExecWait"]

#: Seconds of average wait for an exec beyond which the workers spawn.
SLOW = 0.001
#: Weight of each new wait in the moving average.
WEIGHT = 1 / 8
#: Seconds between spawns made on the reactor thread while the workers spawn.
PROBE_INTERVAL = 0.2


class ExecWait:
    """How long the reactor thread waits for a child's exec, lately."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 slow: float = SLOW, probe_interval: float = PROBE_INTERVAL) -> None:
        self.clock = clock
        self._slow = slow
        self._probe_interval = probe_interval
        #: The moving average of the waits, in seconds.
        self.average = 0.0
        #: Whether spawns go to the workers.
        self.offloading = False
        self._next_probe = 0.0

    def offload(self) -> bool:
        """Whether the next spawn should go to a worker (False: spawn it on
        this thread, and report how long it took with ``waited``)."""
        if not self.offloading:
            return False
        now = self.clock()
        if now < self._next_probe:
            return True
        self._next_probe = now + self._probe_interval
        return False

    def waited(self, seconds: float) -> None:
        """A spawn on the reactor thread took ``seconds``."""
        seconds = min(seconds, self._slow * 4)
        average = self.average + (seconds - self.average) * WEIGHT
        self.average = average
        if self.offloading:
            self.offloading = average >= self._slow / 2
        elif average > self._slow:
            self.offloading = True
            self._next_probe = self.clock() + self._probe_interval

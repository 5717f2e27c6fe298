"""
A few threads that start children while the reactor thread goes on, when
superd runs without spawn helpers (``--spawn-helpers 0``, the default; the
helpers, ``superd.proc.spawnhelper``, cost superd itself less CPU per child
but as much in all).

``posix_spawn`` returns only once the child has executed its program.  On a
busy machine the vfork-style child may wait for a CPU before it gets there,
and a reactor thread spawning in line waits with it, however many other
connections are ready.  So while those waits are long
(``superd.proc.execwait``), the children of ``wait = no`` services are
started by these threads, through glibc's ``posix_spawn`` called with ctypes
(``superd.proc.libcspawn``), which releases the GIL while it waits: the
reactor keeps accepting, deciding and reaping meanwhile.

Results come back to the reactor thread in batches: a worker that finishes
appends to a list and wakes the reactor only if the list was empty, so a
burst of spawns costs one wake-up, not one per child.  Twisted's thread pool
(``callInThread``) would wrap every call in a context switch of its own and
cost a wake-up per result.

The umask is the one setting of a child that belongs to the whole process,
so a spawn that needs one runs on the reactor thread while no worker is
inside ``posix_spawn``: ``quiet()`` takes every worker's gate, waiting for
the spawns already under way (each waits only for its child's exec).

The threads start with the first request, so a daemon that never spawns
never has them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, List, Optional, Tuple, TypeVar, Union

from twisted.logger import Logger

from superd.observe import events

__all__ = ["DEFAULT_WORKERS", "SpawnPool"]

_log = Logger(namespace="superd.spawn")

#: Threads that spawn at once: enough to keep both CPUs of a small machine
#: busy with execs while one waits for a CPU.
DEFAULT_WORKERS = 4

T = TypeVar("T")
#: What ``submit``'s ``done`` is given: the work's result, or what it raised.
Outcome = Union[T, BaseException]


class _Job(Generic[T]):
    __slots__ = ("done", "work")

    def __init__(self, work: Callable[[], T], done: Callable[[Outcome[T]], None]) -> None:
        self.work = work
        self.done = done


class SpawnPool:
    """Runs spawns on worker threads; their results on the reactor thread."""

    def __init__(self, reactor: Any, workers: int = DEFAULT_WORKERS,
                 delivered: Callable[[], None] = lambda: None) -> None:
        """``delivered()`` is called on the reactor thread after each batch
        of results."""
        self._reactor = reactor
        self._delivered = delivered
        self._jobs: queue.SimpleQueue[Optional[_Job[Any]]] = queue.SimpleQueue()
        #: One per worker, held while it spawns (``quiet`` takes them all).
        self._gates = [threading.Lock() for _ in range(workers)]
        self._threads: List[threading.Thread] = []
        self._finished: List[Tuple[_Job[Any], Any]] = []
        self._finished_lock = threading.Lock()
        self._delivery_scheduled = False

    @property
    def size(self) -> int:
        """How many workers spawn at once."""
        return len(self._gates)

    @property
    def started(self) -> bool:
        """Whether the worker threads are running."""
        return bool(self._threads)

    def submit(self, work: Callable[[], T], done: Callable[[Outcome[T]], None]) -> None:
        """Run ``work()`` on a worker; then, on the reactor thread, ``done``
        with its result or the exception it raised."""
        if not self._threads:
            self._start()
        self._jobs.put(_Job(work, done))

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """While inside, no worker spawns (the caller may change the umask)."""
        taken = []
        try:
            for gate in self._gates:
                gate.acquire()
                taken.append(gate)
            yield
        finally:
            for gate in taken:
                gate.release()

    def stop(self) -> None:
        """Let the workers finish what is queued and end (reactor shutdown)."""
        for _ in self._threads:
            self._jobs.put(None)
        self._threads = []

    def _start(self) -> None:
        for gate in self._gates:
            thread = threading.Thread(target=self._work, args=(gate,),
                                      name="superd-spawn", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._reactor.addSystemEventTrigger("after", "shutdown", self.stop)

    def _work(self, gate: threading.Lock) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            result: Any
            with gate:
                try:
                    result = job.work()
                except BaseException as e:  # handed to done() on the reactor thread
                    result = e
            self._finish(job, result)

    def _finish(self, job: _Job[Any], result: Any) -> None:
        with self._finished_lock:
            self._finished.append((job, result))
            if self._delivery_scheduled:
                return
            self._delivery_scheduled = True
        self._reactor.callFromThread(self._deliver)

    def _deliver(self) -> None:
        with self._finished_lock:
            finished, self._finished = self._finished, []
            self._delivery_scheduled = False
        for job, result in finished:
            try:
                job.done(result)
            except Exception:
                _log.failure("handling a started child failed", event=events.EV_SPAWN_ERROR)
        self._delivered()

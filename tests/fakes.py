"""
Shared test fakes for spawning children without spawning anything.

* ``FakeSpawner`` provides ``superd.proc.spawner.ISpawner``: it records each
  ``SpawnRequest``, hands out pids, and lets a test end a child
  (``exit(pid, code)`` / ``kill(pid, signum)``) or make the next spawn fail.
  Signals sent to process groups are recorded; groups can be told to ignore
  SIGTERM.
* ``FakeBackgroundSpawner`` also provides ``IBackgroundSpawner``: requests
  wait until the test calls ``finish``, as a worker thread would make them.
* ``FakeProcessReactor`` is a ``MemoryReactorClock`` that also provides
  ``IReactorProcess`` and records ``spawnProcess`` calls, for code that uses
  Twisted's own process API.

Both are checked with ``verifyObject`` in ``tests/handlers/spawn/test_fakes.py``.
``fake_processes`` and ``make_parts`` build the daemon's parts around them.
"""

from __future__ import annotations

import os
import signal as signals
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import attrs
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from superd.access.state import AccessState
from superd.core.runtime import Runtime
from superd.daemon.parts import Parts
from superd.proc.credentials import Identity
from superd.proc.spawner import (
    ExitStatus,
    IBackgroundSpawner,
    ISpawner,
    SpawnError,
    SpawnRequest,
    Started,
)
from superd.proc.table import ProcessTable

__all__ = ["ROOT", "USER", "FakeBackgroundSpawner", "FakeProcessReactor", "FakeSpawner",
           "SpawnedProcess", "fake_processes", "make_parts"]


@attrs.define(eq=False)
class FakeChild:
    """A child the ``FakeSpawner`` pretends to run."""

    pid: int
    request: SpawnRequest
    on_exit: Callable[[ExitStatus], None]
    alive: bool = True


@implementer(ISpawner)
class FakeSpawner:
    """Records spawns; children end only when the test says so."""

    def __init__(self, first_pid: int = 1000) -> None:
        self._next_pid = first_pid
        self.children: Dict[int, FakeChild] = {}
        #: Every (pgid, signum) sent, in order (not the existence checks, signal 0).
        self.signals: List[Tuple[int, int]] = []
        #: Process groups whose leader ignores SIGTERM.
        self.ignore_term: Set[int] = set()
        #: Process groups that outlive their leader (a stray grandchild).
        self.lingering: Set[int] = set()
        self._fail_next: Optional[SpawnError] = None
        #: Exit status to report synchronously from spawn(), if any.
        self.exit_during_spawn: Optional[int] = None

    @property
    def requests(self) -> List[SpawnRequest]:
        """Every request spawned, in order."""
        return [c.request for c in self.children.values()]

    def fail_next(self, reason: str, errno: int) -> None:
        """Make the next ``spawn`` raise ``SpawnError(reason, errno)``."""
        self._fail_next = SpawnError(reason, OSError(errno, os.strerror(errno)))

    def spawn(self, request: SpawnRequest,
              on_exit: Callable[[ExitStatus], None]) -> int:
        if self._fail_next is not None:
            error, self._fail_next = self._fail_next, None
            raise error
        pid = self._next_pid
        self._next_pid += 1
        child = FakeChild(pid, request, on_exit)
        self.children[pid] = child
        if self.exit_during_spawn is not None:
            self._end(child, self.exit_during_spawn << 8)
        return pid

    def exit(self, pid: int, code: int = 0) -> None:
        """The child ``pid`` exits with ``code`` and is reaped."""
        self._end(self.children[pid], code << 8)

    def kill(self, pid: int, signum: int) -> None:
        """The child ``pid`` dies of ``signum`` and is reaped."""
        self._end(self.children[pid], signum)

    def _end(self, child: FakeChild, raw: int) -> None:
        if child.alive:
            child.alive = False
            child.on_exit(ExitStatus.from_raw(raw))

    def running(self) -> List[int]:
        """Pids of children not yet reaped."""
        return [c.pid for c in self.children.values() if c.alive]

    def kill_group(self, pgid: int, signum: int) -> bool:
        child = self.children.get(pgid)
        group_alive = (child is not None and child.alive) or pgid in self.lingering
        if not group_alive:
            return False
        if signum == 0:
            return True  # only asks whether the group exists
        self.signals.append((pgid, signum))
        if signum == signals.SIGKILL:
            self.lingering.discard(pgid)
        if child is not None and child.alive and (
                signum == signals.SIGKILL
                or (signum == signals.SIGTERM and pgid not in self.ignore_term)):
            self._end(child, signum)
        return True


@implementer(IBackgroundSpawner)
class FakeBackgroundSpawner(FakeSpawner):
    """A ``FakeSpawner`` that also starts children in the background: each
    request waits in ``queued`` until ``finish`` gives it its pid (or the
    error ``fail_next`` set), as a worker thread would."""

    def __init__(self, first_pid: int = 1000) -> None:
        super().__init__(first_pid)
        self.queued: List[Tuple[SpawnRequest, Started, Callable[[ExitStatus], None]]] = []
        #: What ``spawn_in_background`` answers (False: "spawn it yourself").
        self.accepting = True

    def spawns_in_background(self, request: SpawnRequest) -> bool:
        return request.umask is None

    def spawn_in_background(self, request: SpawnRequest, started: Started,
                            on_exit: Callable[[ExitStatus], None]) -> bool:
        if not self.accepting:
            return False
        self.queued.append((request, started, on_exit))
        return True

    def finish(self) -> None:
        """Start every queued request (reporting as the reactor thread would)."""
        queued, self.queued = self.queued, []
        for request, started, on_exit in queued:
            try:
                pid = self.spawn(request, on_exit)
            except SpawnError as error:
                started(error)
                continue
            started(pid)


@implementer(IProcessTransport)
class SpawnedProcess:
    """The transport ``FakeProcessReactor.spawnProcess`` returns."""

    def __init__(self, pid: int, args: Tuple[Any, ...],
                 kwargs: Dict[str, Any]) -> None:
        self.pid: Optional[int] = pid
        self.args = args
        self.kwargs = kwargs
        self.signals: List[Any] = []
        self.closed: List[Any] = []

    def closeStdin(self) -> None:
        self.closed.append(0)

    def closeStdout(self) -> None:
        self.closed.append(1)

    def closeStderr(self) -> None:
        self.closed.append(2)

    def closeChildFD(self, descriptor: int) -> None:
        self.closed.append(descriptor)

    def writeToChild(self, childFD: int, data: bytes) -> None:
        pass

    def loseConnection(self) -> None:
        self.closed.append("all")

    def signalProcess(self, signalID: Any) -> None:
        self.signals.append(signalID)

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass


@implementer(IReactorProcess)
class FakeProcessReactor(MemoryReactorClock):
    """A ``MemoryReactorClock`` that records ``spawnProcess`` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: List[SpawnedProcess] = []
        self._next_pid = 5000

    def spawnProcess(self, processProtocol: Any, executable: Any,
                     args: Any = (), env: Any = None, path: Any = None,
                     uid: Any = None, gid: Any = None, usePTY: Any = False,
                     childFDs: Any = None) -> SpawnedProcess:
        process = SpawnedProcess(self._next_pid, (processProtocol, executable, args),
                                 dict(env=env, path=path, uid=uid, gid=gid,
                                      usePTY=usePTY, childFDs=childFDs))
        self._next_pid += 1
        self.spawned.append(process)
        processProtocol.makeConnection(process)
        return process


#: The identities the spawn tests run superd as.
ROOT = Identity(0, 0, (0,))
USER = Identity(1000, 1000, (1000,))


def fake_processes(reactor: Any, identity: Identity = ROOT,
                   environ: Optional[Dict[str, str]] = None,
                   spawner: Optional[FakeSpawner] = None,
                   ) -> Tuple[ProcessTable, FakeSpawner]:
    """A ``ProcessTable`` whose children are a ``FakeSpawner``'s."""
    spawner = FakeSpawner() if spawner is None else spawner
    table = ProcessTable(
        reactor, spawner,
        environ={"PATH": "/usr/bin:/bin", "LANG": "C"} if environ is None else environ,
        identity=identity, which=lambda name: f"/usr/bin/{name}",
        group_list=lambda user, gid: [gid, 4, 27])
    return table, spawner


def make_parts(runtime: Optional[Runtime] = None, *,
               processes: Optional[ProcessTable] = None, **access: Any) -> Parts:
    """The daemon's parts for unit tests: a ``MemoryReactorClock`` runtime by
    default, a fake-spawner process table, bans in memory, no hosts files
    (unless ``access`` passes them to the ``AccessState``)."""
    if runtime is None:
        runtime = Runtime(MemoryReactorClock())
    if processes is None:
        processes, _ = fake_processes(runtime.reactor)
    return Parts(runtime, processes, AccessState(runtime, processes=processes, **access))


def is_open(fd: int) -> bool:
    """Whether descriptor ``fd`` is open in this process."""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True

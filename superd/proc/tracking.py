"""
Keeping track of every process a service's children start, so that stopping
the service (dropped at reload, or the daemon stopping) stops them too --
also after the child itself has exited and its descendants were reparented
away from superd.

Two trackers, chosen at startup (``open_tracker``) and logged:

* ``Cgroups``: one cgroup v2 per service (``superd.proc.cgroups``).  A
  descendant is in it whatever it does with its session or process group
  (see there for the first milliseconds of a child); SIGKILL goes through
  ``cgroup.kill``.  ``memory_max`` and ``tasks_max`` need it.
* ``ProcessGroups``: the weaker guarantee, where superd cannot have a cgroup
  subtree.  Every child leads its own session and process group; a child
  reaped while its group still has members leaves that group on the list of
  its service, checked every ``PRUNE_INTERVAL`` seconds and forgotten once
  empty (a group number is only reused after it has emptied, and pids would
  have to cycle through ``pid_max`` within that interval for a forgotten
  one to be reused while still listed).  A descendant that leaves the group
  (``setsid``, ``setpgid``) escapes it.

Either way the children themselves are signalled through their process
groups (``superd.proc.table``), so a one-child stop (the TLS pipe) reaches
what stayed in the child's group.
"""

from __future__ import annotations

import os
import signal
from typing import AbstractSet, Any, Callable, Dict, List, Optional, Protocol, Sequence

import attrs
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from superd.observe.events import EV_PROCESS_TRACKING
from superd.proc.cgroups import CgroupError, CgroupMover, CgroupTree, Limits, detect
from superd.proc.spawner import ISpawner

__all__ = [
    "PRUNE_INTERVAL",
    "Cgroups",
    "GroupTarget",
    "ProcessGroups",
    "StopTarget",
    "Tracker",
    "open_tracker",
]

_log = Logger(namespace="superd.spawn")

#: Seconds between checks that remembered process groups still have members.
PRUNE_INTERVAL = 1.0
_NO_LIMITS = Limits()


class StopTarget(Protocol):
    """Something a stop signals and waits for: a process group or a cgroup."""

    def signal(self, signum: int) -> None:
        """Send ``signum`` to every process in it."""

    def alive(self) -> bool:
        """True while some process is in it."""


@attrs.frozen
class GroupTarget:
    """One process group, signalled with ``killpg``."""

    pgid: int
    spawner: ISpawner

    def signal(self, signum: int) -> None:
        self.spawner.kill_group(self.pgid, signum)

    def alive(self) -> bool:
        return bool(self.spawner.kill_group(self.pgid, 0))


@attrs.frozen
class CgroupTarget:
    """Every process of one service's cgroup."""

    tree: CgroupTree
    service_id: str

    def signal(self, signum: int) -> None:
        self.tree.signal(self.service_id, signum)

    def alive(self) -> bool:
        return self.tree.populated(self.service_id)


class Tracker(Protocol):
    """How a ``ProcessTable`` follows its children's descendants."""

    #: ``cgroup`` or ``process group`` (status, logs).
    name: str

    def limits_problem(self, limits: Limits) -> Optional[str]:
        """Why a service's ``limits`` cannot be enforced, or None."""

    def procs(self, service_id: str, limits: Limits) -> Optional[str]:
        """The ``cgroup.procs`` a child of ``service_id`` can move itself into
        (the cgroup made with ``limits``), or None without cgroups; raises
        ``OSError``."""

    def adopt(self, service_id: str, pid: int, limits: Optional[Limits]) -> None:
        """``pid`` was just spawned for ``service_id``; ``limits`` are given
        when it moved itself into its cgroup (``join_prefix``)."""

    def reaped(self, service_id: str, pid: int) -> None:
        """``pid`` of ``service_id`` has been reaped."""

    def targets(self, service_ids: Optional[AbstractSet[str]],
                pgids: Sequence[int]) -> List[StopTarget]:
        """What stopping ``service_ids`` (None: every service) signals, the
        running children's process groups ``pgids`` included."""

    def released(self, service_ids: Optional[AbstractSet[str]]) -> None:
        """Those services were stopped: forget what is left of them."""


class ProcessGroups:
    """Descendants followed through their process group (the fallback)."""

    name = "process group"

    def __init__(self, reactor: Any, spawner: ISpawner, reason: str = "",
                 prune_interval: float = PRUNE_INTERVAL) -> None:
        self._reactor = reactor
        self._spawner = spawner
        #: Why there is no cgroup (for configuration errors).
        self.reason = reason
        self._interval = prune_interval
        #: pgid of a reaped child -> its service, while the group has members.
        self.lingering: Dict[int, str] = {}
        self._timer: Optional[IDelayedCall] = None

    def limits_problem(self, limits: Limits) -> Optional[str]:
        if not limits.controllers:
            return None
        why = f": {self.reason}" if self.reason else ""
        return f"needs a cgroup v2 subtree for superd, and there is none{why}"

    def procs(self, service_id: str, limits: Limits) -> Optional[str]:
        return None

    def adopt(self, service_id: str, pid: int, limits: Optional[Limits]) -> None:
        # The number is a live pid again, so any group listed under it is
        # long gone: never signal the new child as the old service's.
        self.lingering.pop(pid, None)

    def reaped(self, service_id: str, pid: int) -> None:
        if self._spawner.kill_group(pid, 0):
            self.lingering[pid] = service_id
            if self._timer is None:
                self._timer = self._reactor.callLater(self._interval, self._prune)

    def _prune(self) -> None:
        self._timer = None
        for pgid in [g for g in self.lingering if not self._spawner.kill_group(g, 0)]:
            del self.lingering[pgid]
        if self.lingering:
            self._timer = self._reactor.callLater(self._interval, self._prune)

    def targets(self, service_ids: Optional[AbstractSet[str]],
                pgids: Sequence[int]) -> List[StopTarget]:
        groups = list(pgids) + [g for g, s in self.lingering.items()
                                if service_ids is None or s in service_ids]
        return [GroupTarget(g, self._spawner) for g in groups]

    def released(self, service_ids: Optional[AbstractSet[str]]) -> None:
        self._prune_now()

    def _prune_now(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._prune()


class Cgroups:
    """Descendants followed through one cgroup v2 per service, and through
    their process groups for what left before its move (see
    ``superd.proc.cgroups``)."""

    name = "cgroup"

    def __init__(self, tree: CgroupTree, spawner: ISpawner, reactor: Any,
                 move: Optional[Callable[[str, int], None]] = None) -> None:
        self.tree = tree
        self._reactor = reactor
        self.groups = ProcessGroups(reactor, spawner)
        self._mover: Optional[CgroupMover] = None
        if move is None:
            self._mover = CgroupMover(tree, self._move_failed)
            move = self._mover.move
        self._move = move

    def limits_problem(self, limits: Limits) -> Optional[str]:
        return self.tree.limits_problem(limits)

    def procs(self, service_id: str, limits: Limits) -> Optional[str]:
        return self.tree.prepare(service_id, limits)

    def adopt(self, service_id: str, pid: int, limits: Optional[Limits]) -> None:
        self.groups.adopt(service_id, pid, limits)
        if limits is not None:
            return  # it moved itself before executing the server
        try:
            procs = self.tree.prepare(service_id, _NO_LIMITS)
        except OSError as e:
            self._log_failure(service_id, pid, e)
            return
        self._move(procs, pid)

    def _move_failed(self, pid: int, error: OSError) -> None:
        # Called in the mover's thread.
        self._reactor.callFromThread(self._log_failure, None, pid, error)

    def _log_failure(self, service_id: Optional[str], pid: int, error: OSError) -> None:
        _log.error("cannot move child {pid} into its cgroup: {error}",
                   event=EV_PROCESS_TRACKING, service_id=service_id, pid=pid,
                   error=error.strerror or str(error))

    def reaped(self, service_id: str, pid: int) -> None:
        self.groups.reaped(service_id, pid)

    def targets(self, service_ids: Optional[AbstractSet[str]],
                pgids: Sequence[int]) -> List[StopTarget]:
        # The cgroup first: a process in both hears SIGTERM twice, which
        # stops it all the same.
        targets: List[StopTarget] = [CgroupTarget(self.tree, s) for s in self.tree.services()
                                     if service_ids is None or s in service_ids]
        targets.extend(self.groups.targets(service_ids, pgids))
        return targets

    def released(self, service_ids: Optional[AbstractSet[str]]) -> None:
        self.groups.released(service_ids)
        for service_id in self.tree.services():
            if service_ids is None or service_id in service_ids:
                self.tree.remove(service_id)
        if service_ids is None:
            self.tree.close()
            if self._mover is not None:
                self._mover.stop()


def open_tracker(reactor: Any, spawner: ISpawner, option: str) -> Tracker:
    """
    The daemon's tracker for ``--cgroup option``, logged with what was found;
    raises ``CgroupError`` when an explicit ``--cgroup PATH`` cannot be used.
    """
    try:
        found = detect(option)
    except CgroupError as e:
        raise CgroupError(f"--cgroup {option}: {e}") from e
    if found.root is None:
        _log.info("descendants tracked by process group ({reason})",
                  event=EV_PROCESS_TRACKING, mechanism=ProcessGroups.name,
                  reason=found.reason)
        return ProcessGroups(reactor, spawner, found.reason)
    tree = CgroupTree(found.root, own_pid=os.getpid(), move_self=found.move_self)
    try:
        tree.open()
    except CgroupError as e:
        if option != "auto":
            raise CgroupError(f"--cgroup {option}: {e}") from e
        reason = f"cannot use {found.root}: {e}"
        _log.warn("descendants tracked by process group ({reason})",
                  event=EV_PROCESS_TRACKING, mechanism=ProcessGroups.name, reason=reason)
        return ProcessGroups(reactor, spawner, reason)
    _log.info("descendants tracked by cgroup under {path} ({reason}; controllers:"
              " {controllers})", event=EV_PROCESS_TRACKING, mechanism=Cgroups.name,
              path=tree.root, reason=found.reason,
              controllers=" ".join(sorted(tree.controllers)) or "none")
    return Cgroups(tree, spawner, reactor)


#: Signals a stop sends first, in order (a stopped process cannot act on
#: SIGTERM until it is continued).
TERMINATE = (signal.SIGTERM, signal.SIGCONT)

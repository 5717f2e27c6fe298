"""
The table of running children, shared by every service and kept across
reloads: who is running (for ``superd status``, ``--limit`` and stopping),
and how they are stopped -- SIGTERM to each child's process group and to
every descendant its service's tracker knows of (``superd.proc.tracking``:
a cgroup, or the process groups of children already reaped), SIGKILL after
a grace period, done when every child has been reaped and every descendant
is gone.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
from functools import partial
from typing import (
    AbstractSet,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from superd.core.session import Peer
from superd.observe import events
from superd.proc.clonespawn import CloneSpawn
from superd.proc.credentials import Identity, SpawningThread
from superd.proc.execwait import ExecWait
from superd.proc.libcspawn import LibcSpawn
from superd.proc.reaping import ExitReaping
from superd.proc.spawner import (
    ExitStatus,
    IBackgroundSpawner,
    ISpawner,
    PosixSpawner,
    SpawnError,
    SpawnRequest,
    Started,
)
from superd.proc.spawnpool import SpawnPool
from superd.proc.tracking import (
    TERMINATE,
    GroupTarget,
    ProcessGroups,
    StopTarget,
    Tracker,
    open_tracker,
)

__all__ = ["Child", "ProcessTable", "open_process_table", "prepare_process"]

_log = Logger(namespace="superd.spawn")

#: After SIGKILL, how long to wait for the kernel before giving up waiting.
KILL_TIMEOUT = 5.0
#: Seconds between looks at descendants a stop waits for (they are not
#: superd's children: no SIGCHLD says they have gone).
POLL_INTERVAL = 0.05
#: superd raises its own soft descriptor limit to the hard one (children
#: inherit it: xinetd gives them soft = hard), but not beyond this.
NOFILE_CAP = 1 << 20


@attrs.define(eq=False)
class Child:
    """One running child: a session leader, so its pgid is its pid."""

    pid: int
    service_id: str
    peer: Optional[Peer]
    started: float
    status: Optional[ExitStatus] = None
    _watchers: List[Callable[["Child"], None]] = attrs.field(factory=list)

    @property
    def pgid(self) -> int:
        """The child's process group (it was started with ``setsid``)."""
        return self.pid

    def on_exit(self, callback: Callable[["Child"], None]) -> None:
        """Call ``callback(self)`` once it is reaped (at once if it was)."""
        if self.status is not None:
            callback(self)
        else:
            self._watchers.append(callback)

    def _ended(self, status: ExitStatus) -> None:
        self.status = status
        watchers, self._watchers = self._watchers, []
        for callback in watchers:
            callback(self)


class ProcessTable:
    """Every child superd started, until it is reaped."""

    def __init__(self, reactor: Any, spawner: ISpawner, *,
                 environ: Mapping[str, str], identity: Identity,
                 which: Callable[[str], Optional[str]] = shutil.which,
                 group_list: Callable[[str, int], Sequence[int]] = os.getgrouplist,
                 tracker: Optional[Tracker] = None,
                 ) -> None:
        self._reactor = reactor
        self.spawner = spawner
        #: Follows every process the children start (cgroup or process group).
        self.tracker: Tracker = (ProcessGroups(reactor, spawner) if tracker is None
                                 else tracker)
        #: superd's environment at startup (the base of children's).
        self.environ: Mapping[str, str] = dict(environ)
        self.identity = identity
        self.group_list = group_list
        self._which = which
        self._children: Dict[int, Child] = {}
        #: The spawner again, when it can start children off the reactor thread.
        self._background: Optional[IBackgroundSpawner] = (
            spawner if IBackgroundSpawner.providedBy(spawner)
            else None)
        #: Children being started off the reactor thread, per service.
        self._starting: Dict[str, int] = {}
        #: (service ids or None for all, Deferred) of stops waiting for them.
        self._waiting: List[Tuple[Optional[AbstractSet[str]], Deferred[None]]] = []

    @property
    def running(self) -> int:
        """How many children are running or being started (``--limit``
        counts them)."""
        return len(self._children) + sum(self._starting.values())

    def find_program(self, name: str) -> Optional[str]:
        """The absolute path of a helper program, looked up at load time."""
        return self._which(name)

    def spawn(self, request: SpawnRequest, service_id: str,
              peer: Optional[Peer]) -> Child:
        """Start ``request``; raises ``SpawnError`` and then tracks nothing."""
        return self._spawn_now(request, service_id, peer)

    def _spawn_now(self, request: SpawnRequest, service_id: str,
                   peer: Optional[Peer]) -> Child:
        child = Child(0, service_id, peer, self._reactor.seconds())
        child.pid = self.spawner.spawn(request, partial(self._reaped, child))
        self.tracker.adopt(service_id, child.pid, request.limits)
        # Reaped inside spawn() (a fake spawner can): deliver it on the next
        # turn instead, so that callers can log START before EXIT.
        early, child.status = child.status, None
        self._children[child.pid] = child
        if early is not None:
            self._reactor.callLater(0, self._reaped, child, early)
        return child

    def start(self, request: SpawnRequest, service_id: str, peer: Optional[Peer],
              started: Callable[[Child], None],
              failed: Callable[[SpawnError], None]) -> None:
        """
        Start ``request``: ``started(child)`` once its pid is known and it is
        tracked, or ``failed(error)``.  Off the reactor thread when the
        spawner can (then both come later, and the child counts for
        ``running`` from now on), else at once, as ``spawn``.  The caller
        may close the request's descriptors when this returns.
        """
        background = self._background
        if background is not None and background.spawns_in_background(request):
            child = Child(0, service_id, peer, self._reactor.seconds())
            if background.spawn_in_background(
                    request, partial(self._started, child, request, started, failed),
                    partial(self._reaped, child)):
                self._starting[service_id] = self._starting.get(service_id, 0) + 1
                return
        try:
            spawned = self._spawn_now(request, service_id, peer)
        except SpawnError as e:
            failed(e)
            return
        started(spawned)

    def _started(self, child: Child, request: SpawnRequest, started: Callable[[Child], None],
                 failed: Callable[[SpawnError], None],
                 outcome: Union[int, SpawnError]) -> None:
        if isinstance(outcome, SpawnError):
            self._started_one(child.service_id)
            failed(outcome)
            return
        child.pid = outcome
        self._children[outcome] = child
        self.tracker.adopt(child.service_id, outcome, request.limits)
        started(child)
        # Last: a stop waiting for this child's pid signals it now.
        self._started_one(child.service_id)

    def _started_one(self, service_id: str) -> None:
        left = self._starting[service_id] - 1
        if left:
            self._starting[service_id] = left
            return
        del self._starting[service_id]
        waiting = self._waiting
        self._waiting = []
        for ids, settled in waiting:
            if self._still_starting(ids):
                self._waiting.append((ids, settled))
            else:
                settled.callback(None)

    def _still_starting(self, service_ids: Optional[AbstractSet[str]]) -> bool:
        if service_ids is None:
            return bool(self._starting)
        return any(service_id in self._starting for service_id in service_ids)

    def _when_started(self, service_ids: Optional[AbstractSet[str]]) -> "Deferred[None]":
        """Fires once no child of ``service_ids`` (None: of any) is being started."""
        settled: Deferred[None] = Deferred()
        self._waiting.append((service_ids, settled))
        return settled

    def _reaped(self, child: Child, status: ExitStatus) -> None:
        self._children.pop(child.pid, None)
        self.tracker.reaped(child.service_id, child.pid)
        child._ended(status)

    def children(self, service_id: Optional[str] = None) -> Tuple[Child, ...]:
        """Running children, oldest first (of ``service_id`` if given)."""
        return tuple(c for c in self._children.values()
                     if service_id is None or c.service_id == service_id)

    def stop(self, children: Iterable[Child], grace: float) -> "Deferred[None]":
        """Stop ``children`` and what stayed in their process groups: SIGTERM,
        SIGKILL after ``grace`` seconds; fires once they are reaped."""
        victims = [c for c in children if c.status is None]
        groups: List[StopTarget] = [GroupTarget(c.pgid, self.spawner) for c in victims]
        return self._stop(victims, groups, grace)

    def stop_all(self, grace: float) -> "Deferred[None]":
        """Stop every child and every descendant: SIGTERM, SIGKILL after
        ``grace`` seconds (the daemon is stopping), once those being started
        have their pids."""
        return self._stop_started(None, grace)

    def stop_service(self, service_id: str, grace: float) -> "Deferred[None]":
        """Stop the children of one service and their descendants (a reload
        dropped it), once those being started have their pids."""
        return self._stop_started(frozenset({service_id}), grace)

    def _stop_started(self, service_ids: Optional[AbstractSet[str]],
                      grace: float) -> "Deferred[None]":
        def stop(_: object = None) -> "Deferred[None]":
            return self._stop_services(service_ids, grace)
        if not self._still_starting(service_ids):
            return stop()
        return self._when_started(service_ids).addCallback(stop)

    def _stop_services(self, service_ids: Optional[AbstractSet[str]],
                       grace: float) -> "Deferred[None]":
        victims = [c for c in self._children.values()
                   if service_ids is None or c.service_id in service_ids]
        targets = self.tracker.targets(service_ids, [c.pgid for c in victims])
        done = self._stop(victims, targets, grace)

        def release(result: None) -> None:
            self.tracker.released(service_ids)
        return done.addCallback(release)

    def _stop(self, victims: List[Child], targets: List[StopTarget],
              grace: float) -> "Deferred[None]":
        targets = [t for t in targets if t.alive()]
        if not victims and not targets:
            return succeed(None)
        _log.info("stopping {count} children with SIGTERM, grace {grace}s",
                  event=events.EV_STOP_CHILDREN, count=len(victims), grace=grace,
                  targets=len(targets))
        stop = _Stop(self._reactor, victims, targets, grace)
        return stop.done


class _Stop:
    """One stop operation: TERM now, KILL at the deadline, then done once
    the children are reaped and the targets are empty."""

    def __init__(self, reactor: Any, victims: List[Child],
                 targets: List[StopTarget], grace: float) -> None:
        self.done: Deferred[None] = Deferred()
        self._reactor = reactor
        self._targets = targets
        self._running = {c.pid for c in victims}
        self._killed = False
        self._poll: Optional[IDelayedCall] = None
        for target in targets:
            for signum in TERMINATE:
                target.signal(signum)
        self._timer: Optional[IDelayedCall] = reactor.callLater(grace, self._kill)
        for child in victims:
            child.on_exit(self._reaped)
        self._check()

    def _reaped(self, child: Child) -> None:
        self._running.discard(child.pid)
        self._alive()  # prune a group the child left empty
        self._check()

    def _alive(self) -> List[StopTarget]:
        # Forget groups found empty: a group number stays allocated (cannot
        # be reused by another process) only while some process is in it,
        # so an empty group must never be signalled again.
        self._targets = [t for t in self._targets if t.alive()]
        return self._targets

    def _check(self) -> None:
        if self.done.called or self._running:
            return
        if not self._alive():
            self._finish()
        elif self._poll is None:
            self._poll = self._reactor.callLater(POLL_INTERVAL, self._polled)

    def _polled(self) -> None:
        self._poll = None
        self._check()

    def _kill(self) -> None:
        self._timer = None
        self._killed = True
        alive = self._alive()
        if alive:
            _log.warn("grace period over: SIGKILL to {count} process groups or cgroups",
                      event=events.EV_KILL_CHILDREN, count=len(alive),
                      pgids=[getattr(t, "pgid", None) for t in alive])
        for target in alive:
            target.signal(signal.SIGKILL)
        self._check()
        if not self.done.called:
            self._timer = self._reactor.callLater(KILL_TIMEOUT, self._give_up)

    def _give_up(self) -> None:
        self._timer = None
        _log.error("children {pids} survived SIGKILL; not waiting any longer",
                   event=events.EV_KILL_CHILDREN_FAILED, pids=sorted(self._running))
        self._finish()

    def _finish(self) -> None:
        for timer in (self._timer, self._poll):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._poll = None
        if not self.done.called:
            self.done.callback(None)


def prepare_process(fd_dir: str = "/proc/self/fd") -> int:
    """
    One startup pass: make every descriptor >= 3 close-on-exec (PEP 446 does
    this for all Python creates; this catches ones inherited from the
    supervisor), and raise the soft descriptor limit to the hard one.
    Returns how many descriptors were changed.
    """
    changed = 0
    for name in os.listdir(fd_dir):
        fd = int(name)
        try:
            if fd >= 3 and os.get_inheritable(fd):
                os.set_inheritable(fd, False)
                changed += 1
        except OSError:
            continue  # the listing's own descriptor, already closed
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_CAP if hard == resource.RLIM_INFINITY else min(hard, NOFILE_CAP)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return changed


@implementer(IBackgroundSpawner)
class _FirstSpawn:
    """
    The spawner until the first child: loads the spawn helpers' code
    (``superd.proc.spawnhelper``) with the first request to start one, so
    that a daemon that never spawns neither imports it nor starts a helper.
    """

    def __init__(self, reactor: Any, inline: PosixSpawner, count: int) -> None:
        self._reactor = reactor
        self._inline = inline
        self._count = count
        self._helpers: Optional[IBackgroundSpawner] = None
        self.reaping = inline.reaping

    def spawn(self, request: SpawnRequest, on_exit: Callable[[ExitStatus], None]) -> int:
        """See ``ISpawner``: on the reactor thread."""
        return self._inline.spawn(request, on_exit)

    def kill_group(self, pgid: int, signum: int) -> bool:
        """See ``ISpawner``."""
        return self._inline.kill_group(pgid, signum)

    def spawns_in_background(self, request: SpawnRequest) -> bool:
        """See ``IBackgroundSpawner``."""
        helpers = self._helpers
        if helpers is None:
            from superd.proc.spawnhelper import HelperSpawner

            helpers = self._helpers = HelperSpawner(self._reactor, self._inline,
                                                    count=self._count)
        return helpers.spawns_in_background(request)

    def spawn_in_background(self, request: SpawnRequest, started: Started,
                            on_exit: Callable[[ExitStatus], None]) -> bool:
        """See ``IBackgroundSpawner``."""
        assert self._helpers is not None, "spawns_in_background said no"
        return self._helpers.spawn_in_background(request, started, on_exit)


def _real_spawner(reactor: Any, identity: Identity,
                  which: Callable[[str], Optional[str]],
                  helpers: int) -> ISpawner:
    thread = SpawningThread.for_this_machine(identity)
    if thread.can_switch and not thread.probe():
        thread = SpawningThread(identity, None)
    mechanism = ("thread" if thread.can_switch else
                 "setpriv" if identity.is_root else "none (not root)")
    reaping = ExitReaping(reactor)
    spawner: ISpawner
    if helpers > 0:
        inline = PosixSpawner(thread, setpriv=which("setpriv"), reaping=reaping)
        spawner = _FirstSpawn(reactor, inline, helpers)
        background = f"{helpers} helper processes"
    elif (clone := CloneSpawn.load()) is not None:
        spawner = PosixSpawner(thread, setpriv=which("setpriv"), reaping=reaping,
                               clone=clone, later=reactor.callLater)
        background = "clone, without waiting for exec"
    else:
        libc = LibcSpawn.load()
        pool = None if libc is None else SpawnPool(reactor, delivered=reaping.reap_ended)
        spawner = PosixSpawner(thread, setpriv=which("setpriv"), reaping=reaping,
                               pool=pool, background=libc, exec_wait=ExecWait())
        background = "threads" if libc is not None else "none"
    _log.info("child credentials via {mechanism}; spawning off the reactor thread by "
              "{background}", event=events.EV_SPAWN_MECHANISM,
              mechanism=mechanism, background=background)
    return spawner


def open_process_table(reactor: Any, *, spawner: Optional[ISpawner] = None,
                       environ: Optional[Mapping[str, str]] = None,
                       identity: Optional[Identity] = None,
                       which: Callable[[str], Optional[str]] = shutil.which,
                       group_list: Callable[[str, int], Sequence[int]] = os.getgrouplist,
                       cgroup: str = "none",
                       spawn_helpers: int = 0,
                       ) -> ProcessTable:
    """
    The daemon's ``ProcessTable``.  Without an explicit ``spawner`` this is
    the real daemon: prepare the process (descriptors, limits) and use
    ``posix_spawn``.  ``environ`` defaults to a snapshot of the current
    environment: the startup environment children inherit.  ``cgroup`` is
    ``--cgroup`` (``auto``, ``none`` or a path; see ``superd.proc.cgroups``);
    raises ``CgroupError`` if a path given there cannot be used.
    ``spawn_helpers`` is ``--spawn-helpers``: how many helper processes
    start children (``superd.proc.spawnhelper``), 0 for superd's own way:
    the clone module where it is built (``superd.proc.clonespawn``), else
    spawn threads.
    """
    identity = Identity.current() if identity is None else identity
    if spawner is None:
        changed = prepare_process()
        if changed:
            _log.info("made {count} inherited descriptors close-on-exec",
                      event=events.EV_CLOEXEC, count=changed)
        spawner = _real_spawner(reactor, identity, which, spawn_helpers)
    env = dict(os.environ) if environ is None else environ
    return ProcessTable(reactor, spawner, environ=env, identity=identity,
                        which=which, group_list=group_list,
                        tracker=open_tracker(reactor, spawner, cgroup))

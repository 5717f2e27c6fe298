"""
Starting children through spawn helper processes, so that the reactor
thread never waits for a child's exec.

``posix_spawn`` returns once the child has executed its program.  Called on
the reactor thread, that wait stalls every other connection; a worker
thread of superd (``superd.proc.spawnpool``) does not stall it, but each
hand-over is a switch of the interpreter lock between two threads, which
costs more CPU than the spawn.  A helper is a small process of our own
(``superd.proc.helpermain``, no Twisted) with its own interpreter: the
reactor sends it the request with the connection's descriptors attached
(one ``sendmsg``, ``SCM_RIGHTS``) and goes on; the helper spawns, reaps,
and reports ``started``, ``failed`` and ``exited`` in batches that the
reactor reads like any socket.  Two helpers start two children at once on
two CPUs.  They take the spawn's CPU off superd, but cost about as much
themselves, and busy helpers compete with the reactor for the CPUs, so
superd's other services answer later while they spawn: they are used only
when asked for (``--spawn-helpers N``; bench/README, "Why the code is the
way it is", has the figures for threads and for one, two and four helpers).
Where superd's compiled clone module is built (``superd.proc.clonespawn``),
the reactor thread does not wait for the exec in the first place.

``HelperSpawner`` is the ``IBackgroundSpawner`` the process table uses.
Its helpers start with the first spawn (a daemon that never spawns has
none); until one has answered, and whenever every helper has
``MAX_PENDING`` requests unanswered or its socket is full, children are
started on the reactor thread by the ``PosixSpawner`` given, which also
prepares every request (credentials plan or ``setpriv`` wrapper, the
wrapped server's check) and renices a child when superd is not root.
Signalling groups stays superd's own ``killpg``.

A helper that dies (its socket closes) is logged, its unanswered requests
fail (``SpawnError(fork)``: FAIL logged, the connection closed), and the
children it had started are followed by a pidfd each until they end, when
they are reported with an unknown status (``ExitStatus(None)``); it is
started again after a back-off that grows while new helpers die before
answering.
"""

from __future__ import annotations

import array
import errno
import marshal
import os
import signal
import socket
import sys
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import attrs
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.observe import events
from superd.observe.events import REASON_FORK
from superd.proc.helpermain import EXITED, FAILED, READY, SOCKET_FD, STARTED
from superd.proc.reaping import ExitStatus
from superd.proc.spawner import (
    IBackgroundSpawner,
    PosixSpawner,
    SpawnError,
    SpawnRequest,
    Started,
    classify_spawn_error,
)

__all__ = ["DEFAULT_HELPERS", "MAX_PENDING", "HelperSpawner", "launch_helper"]

_log = Logger(namespace="superd.spawn")

OnExit = Callable[[ExitStatus], None]
#: Starts one helper: its pid and superd's end of its socket.
Launch = Callable[[], Tuple[int, socket.socket]]

#: Helpers started when no number is given: two start two children at
#: once on two CPUs; more compete with superd's reactor for the CPUs.
DEFAULT_HELPERS = 2
#: Requests one helper holds unanswered at most; beyond, the reactor
#: thread spawns (the helper is behind, and each request holds descriptors).
MAX_PENDING = 64
#: Seconds before the first restart of a helper that died; doubled for each
#: helper in a row that dies before answering, up to ``MAX_RESTART_DELAY``.
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
#: The largest batch of replies read in one ``recv``.
REPLY_BUFFER = 1 << 16


def launch_helper(posix_spawn: Callable[..., int] = os.posix_spawn,
                  executable: str = sys.executable) -> Tuple[int, socket.socket]:
    """
    Start a helper process (``superd.proc.helpermain``) on a new socket pair;
    its pid and superd's end (non-blocking).  It imports superd from where
    this process did: it gets this interpreter and this ``sys.path``.
    """
    if not executable:
        raise OSError(errno.ENOENT, "no Python interpreter to run the spawn helper")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # The directory holding this superd package first: an editable install's
    # import hook (a .pth file, which -S skips) may be how superd was found.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = [package_root, *(p for p in sys.path if p != package_root)]
    code = (f"import sys; sys.path[:] = {path!r}; "
            "from superd.proc.helpermain import main; main()")
    try:
        pid = posix_spawn(
            executable, [executable, "-E", "-S", "-c", code], dict(os.environ),
            file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), SOCKET_FD),
                          (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
            setsigdef=frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP},
            # Not a session of its own: with the scheduler's autogroups that
            # would give each helper as much CPU as superd, whose reactor
            # then waits for one (echo latency while spawning: bench/README).
            setsigmask=())
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    ours.setblocking(False)
    return pid, ours


@attrs.define
class _Pending:
    """A request sent and not answered yet."""

    request: SpawnRequest
    thread_nice: Optional[int]
    started: Started
    on_exit: OnExit


class _Helper:
    """One helper process, as the reactor's reader of its socket."""

    def __init__(self, owner: "HelperSpawner", pid: int, sock: socket.socket) -> None:
        self.owner = owner
        self.pid = pid
        self.sock = sock
        self._fd = sock.fileno()
        self.ready = False
        self.gone = False
        #: Request id -> what to do with its answer.
        self.pending: Dict[int, _Pending] = {}
        #: pid -> on_exit of each child it started that has not ended.
        self.children: Dict[int, OnExit] = {}

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "spawn-helper"

    def doRead(self) -> None:
        self.owner._read(self)

    def connectionLost(self, reason: Failure) -> None:
        # Only the reactor's shutdown (disconnectAll) gets here: the reads
        # find the helper's end of the socket closed themselves.
        self.owner._shut(self)


class _Orphan:
    """A child whose helper died, followed by a pidfd until it ends."""

    def __init__(self, owner: "HelperSpawner", pidfd: int, pid: int, on_exit: OnExit) -> None:
        self.owner = owner
        self.pidfd = pidfd
        self.pid = pid
        self.on_exit = on_exit

    def fileno(self) -> int:
        return self.pidfd

    def logPrefix(self) -> str:
        return "spawn-orphan"

    def doRead(self) -> None:
        self.owner._orphan_ended(self)

    def connectionLost(self, reason: Failure) -> None:
        self.owner._orphan_ended(self, report=False)


@implementer(IBackgroundSpawner)
class HelperSpawner:
    """Starts children through helper processes; see the module docstring."""

    def __init__(self, reactor: Any, inline: PosixSpawner, *,
                 count: int = DEFAULT_HELPERS, launch: Launch = launch_helper,
                 pidfd_open: Callable[[int], int] = os.pidfd_open,
                 restart_delay: float = RESTART_DELAY) -> None:
        """``inline`` spawns on the reactor thread and prepares requests;
        ``count`` helpers at most (at least one)."""
        self._reactor = reactor
        self._inline = inline
        self.reaping = inline.reaping
        self._count = max(1, count)
        self._launch = launch
        self._pidfd_open = pidfd_open
        self._restart_delay = restart_delay
        self._helpers: List[_Helper] = []
        self._orphans: Dict[int, _Orphan] = {}
        self._next_id = 0
        self._turn = 0
        self._chosen: Optional[_Helper] = None
        #: Helpers in a row that died before answering (for the back-off).
        self._failures = 0
        self._next_start = 0.0
        self._restart: Optional[IDelayedCall] = None

    @property
    def helpers(self) -> Tuple[int, ...]:
        """The pids of the helpers running (ready or starting)."""
        return tuple(h.pid for h in self._helpers)

    @property
    def orphans(self) -> int:
        """Children of dead helpers still followed."""
        return len(self._orphans)

    def spawn(self, request: SpawnRequest, on_exit: OnExit) -> int:
        """See ``ISpawner.spawn``: on the reactor thread."""
        return self._inline.spawn(request, on_exit)

    def kill_group(self, pgid: int, signum: int) -> bool:
        """See ``ISpawner.kill_group``."""
        return self._inline.kill_group(pgid, signum)

    def spawns_in_background(self, request: SpawnRequest) -> bool:
        """See ``IBackgroundSpawner``: whether a helper can take it now
        (starting the helpers that are missing)."""
        if len(self._helpers) < self._count:
            self._start()
        # Kept for the spawn_in_background call that follows at once.
        self._chosen = self._pick()
        return self._chosen is not None

    def _pick(self) -> Optional[_Helper]:
        """The ready helper with the fewest requests pending, taking turns
        among equals."""
        helpers = self._helpers
        count = len(helpers)
        best: Optional[_Helper] = None
        for i in range(count):
            helper = helpers[(self._turn + i) % count]
            if helper.ready and len(helper.pending) < MAX_PENDING and (
                    best is None or len(helper.pending) < len(best.pending)):
                best = helper
        self._turn += 1
        return best

    def spawn_in_background(self, request: SpawnRequest, started: Started,
                            on_exit: OnExit) -> bool:
        """See ``IBackgroundSpawner``."""
        helper, self._chosen = self._chosen, None
        if helper is None or helper.gone:
            helper = self._pick()
            if helper is None:
                return False
        try:
            executable, argv, plan, thread_nice = self._inline.prepare(request)
        except SpawnError:
            return False  # spawn() raises it again, synchronously, for the caller
        descriptors: List[int] = []
        targets: List[List[int]] = []
        for child, ours in sorted(request.fds.items()):
            if ours in descriptors:
                targets[descriptors.index(ours)].append(child)
            else:
                descriptors.append(ours)
                targets.append([child])
        self._next_id = rid = self._next_id + 1
        env = request.env if type(request.env) is dict else dict(request.env)
        message = marshal.dumps((
            rid, executable, argv, env, targets,
            None if plan is None else (plan.uid, plan.gid, plan.groups),
            thread_nice, request.umask))
        try:
            helper.sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                             array.array("i", descriptors))])
        except OSError:
            # Full (the helper is behind), or the helper is gone and its
            # socket's end has not been read yet: spawn here this time.
            return False
        helper.pending[rid] = _Pending(request, thread_nice, started, on_exit)
        return True

    def _start(self) -> None:
        """Start the missing helpers, unless backing off."""
        now = self._reactor.seconds()
        if now < self._next_start:
            self._restart_at(self._next_start - now)
            return
        while len(self._helpers) < self._count and now >= self._next_start:
            try:
                pid, sock = self._launch()
            except OSError as e:
                self._back_off(now)
                _log.error("cannot start a spawn helper: {error}", event=events.EV_SPAWN_HELPER,
                           state=events.HELPER_UNSTARTABLE, error=str(e))
                return
            helper = _Helper(self, pid, sock)
            self._helpers.append(helper)
            self.reaping.watch(pid, partial(self._exited, pid))
            self._reactor.addReader(helper)

    def _back_off(self, now: float, delay: Optional[float] = None) -> None:
        """No helper starts for a while (by default: longer for each in a
        row that failed); then the missing ones start, without waiting for
        a spawn."""
        if delay is None:
            delay = min(MAX_RESTART_DELAY, self._restart_delay * 2 ** self._failures)
            self._failures += 1
        self._next_start = now + delay
        self._restart_at(delay)

    def _restart_at(self, delay: float) -> None:
        restart = self._restart
        if restart is not None and restart.active():
            restart.reset(delay)
        else:
            self._restart = self._reactor.callLater(delay, self._start)

    def _read(self, helper: _Helper) -> None:
        """Take in every batch of replies waiting."""
        sock = helper.sock
        while not helper.gone:
            try:
                data = sock.recv(REPLY_BUFFER)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost(helper)
                return
            for kind, a, b in marshal.loads(data):
                try:
                    self._reply(helper, kind, a, b)
                except Exception:
                    # One child's bookkeeping must not stop the others'.
                    _log.failure("handling the spawn helper's reply {reply} failed",
                                 event=events.EV_SPAWN_ERROR, reply=(kind, a, b))

    def _reply(self, helper: _Helper, kind: int, a: int, b: int) -> None:
        if kind == EXITED:
            on_exit = helper.children.pop(a, None)
            # The helper reaped the child before saying so: for the
            # microseconds until this line a stop could still signal its
            # group, whose number the kernel could in theory have handed to
            # a new process already (it would have to cycle through every
            # pid in between).
            if on_exit is not None:
                on_exit(ExitStatus.from_raw(b))
        elif kind == STARTED:
            pending = helper.pending.pop(a)
            helper.children[b] = pending.on_exit
            self._inline.started(pending.request, b, pending.thread_nice)
            pending.started(b)
        elif kind == FAILED:
            pending = helper.pending.pop(a)
            err = OSError(b, os.strerror(b))
            pending.started(SpawnError(classify_spawn_error(err), err))
        elif kind == READY:
            helper.ready = True
            self._failures = 0
            _log.info("spawn helper {pid} ready", event=events.EV_SPAWN_HELPER,
                      state=events.HELPER_READY, pid=helper.pid)

    def _forget(self, helper: _Helper) -> None:
        helper.gone = True
        self._reactor.removeReader(helper)
        helper.sock.close()
        self._helpers.remove(helper)

    def _lost(self, helper: _Helper) -> None:
        """The helper's socket closed: it died (superd never closes it first
        but at shutdown)."""
        self._forget(helper)
        now = self._reactor.seconds()
        self._back_off(now, self._restart_delay if helper.ready else None)
        pending, helper.pending = helper.pending, {}
        children, helper.children = helper.children, {}
        _log.warn("spawn helper {pid} died: {requests} requests refused, "
                  "{children} children followed by pidfd",
                  event=events.EV_SPAWN_HELPER, state=events.HELPER_LOST, pid=helper.pid,
                  requests=len(pending), children=len(children))
        # A request it received may have become a child before it died:
        # that child serves the connection and nobody counts it.  Nothing
        # can tell it from a request never read.
        for waiting in pending.values():
            waiting.started(SpawnError(REASON_FORK, OSError(errno.EIO, "spawn helper died")))
        for pid, on_exit in children.items():
            self._follow(pid, on_exit)

    def _shut(self, helper: _Helper) -> None:
        """The reactor is shutting down: let the helper go (it exits on EOF)."""
        if not helper.gone:
            self._forget(helper)

    def _follow(self, pid: int, on_exit: OnExit) -> None:
        # The child was re-parented when its helper died, and may have ended
        # and been reaped since: if its pid was reused meanwhile (the kernel
        # would have to cycle through every pid first), the pidfd follows
        # the newcomer and the count holds until that one ends.
        try:
            pidfd = self._pidfd_open(pid)
        except OSError:  # ESRCH: gone already
            on_exit(ExitStatus.from_raw(None))
            return
        orphan = _Orphan(self, pidfd, pid, on_exit)
        self._orphans[pid] = orphan
        self._reactor.addReader(orphan)

    def _orphan_ended(self, orphan: _Orphan, report: bool = True) -> None:
        if self._orphans.pop(orphan.pid, None) is None:
            return
        self._reactor.removeReader(orphan)
        os.close(orphan.pidfd)
        if report:
            orphan.on_exit(ExitStatus.from_raw(None))

    def _exited(self, pid: int, status: ExitStatus) -> None:
        _log.info("spawn helper {pid} exited ({status})", event=events.EV_SPAWN_HELPER,
                  state=events.HELPER_EXITED, pid=pid, status=status.raw)

    def close(self) -> None:
        """Let every helper go (each exits on EOF) and stop following
        orphans: for tests and a process that stops managing children."""
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        self._count = 0  # and start no more
        for helper in list(self._helpers):
            self._forget(helper)
        for orphan in list(self._orphans.values()):
            self._orphan_ended(orphan, report=False)

"""
Starting a child with ``posix_spawn`` and learning when it ends.

Why not ``reactor.spawnProcess``: before every spawn Twisted lists
``/proc/self/fd`` and calls ``fcntl`` on each descriptor in Python, so a
spawn costs more the more connections superd holds; it cannot ``setsid``;
and ``uid=``/``gid=`` make it fork the interpreter.  Here every descriptor
superd holds is close-on-exec (PEP 446, plus one startup pass in
``superd.proc.table.prepare_process``), so the child gets exactly the
descriptors in the request's map, at a cost that does not depend on how many
descriptors superd has open (bench/README, "Why the code is the way it is",
has the figures).

Children are reaped on SIGCHLD, at a cost per exited child
(``superd.proc.reaping``).

``posix_spawn`` returns once the child has executed its program, so the
thread calling it waits for that exec.  ``spawn`` calls it on the calling
thread.  ``spawn_in_background`` starts a child without that wait, in one
of two ways:

* with ``clone`` (``superd.proc.clonespawn``, where its compiled module
  was built: the default), from the calling thread, which goes on as soon
  as the child exists; whether the exec succeeded is settled on a later
  reactor turn, before the start is reported;
* otherwise on a worker thread of a ``SpawnPool``.  Given an ``ExecWait``,
  the spawner offers the workers only while the waits on the reactor
  thread are long (``superd.proc.execwait``): the workers cost more CPU per
  child than they save while a CPU is free.

With ``--spawn-helpers N`` helper processes start the children instead
(``superd.proc.spawnhelper``, which uses this spawner to prepare each
request, and to spawn on the reactor thread until a helper is ready).

Per-child settings and how they reach the child without leaving the fast path:

* credentials: the spawning thread takes them (``superd.proc.credentials``),
  or, where that is unavailable, a ``setpriv`` argv prefix;
* nice: per-thread as well when superd is root (race-free); otherwise
  ``setpriority`` on the child right after it started: not race-free (the
  child runs for microseconds at superd's priority), which is harmless for a
  scheduling hint;
* umask: superd's umask is set around a spawn on the reactor thread, while
  no worker is spawning.  The umask is process-wide, so for those
  microseconds another thread creating a file would see it; superd creates
  files only from the reactor thread, which is busy spawning;
* rlimits: per process, so no thread trick; ``prlimit`` after the spawn would
  leave a window where the server runs (and may fork) unlimited, so they are
  set by a ``prlimit`` argv prefix (``superd.handlers.spawn.argv.limits_prefix``),
  race-free at the price of one more exec, for services that ask.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
from functools import partial
from typing import Callable, Dict, Mapping, Optional, Protocol, Set, Tuple, Union

import attrs
from twisted.internet import process
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from superd.observe import events
from superd.observe.events import REASON_EXEC, REASON_FORK
from superd.proc.cgroups import Limits
from superd.proc.clonespawn import CloneSpawn
from superd.proc.credentials import CredentialPlan, SpawningThread, setpriv_prefix
from superd.proc.execwait import ExecWait
from superd.proc.reaping import ExitReaping, ExitStatus, TwistedReaping
from superd.proc.spawnpool import SpawnPool

_log = Logger(namespace="superd.spawn")

#: Either watcher in ``superd.proc.reaping``.
Reaping = Union[ExitReaping, TwistedReaping]

__all__ = [
    "DESCRIPTOR_RESERVE",
    "MAX_IN_FLIGHT",
    "SETTLE_INTERVAL",
    "ExitStatus",
    "IBackgroundSpawner",
    "ISpawner",
    "PosixSpawner",
    "Reaping",
    "SpawnError",
    "SpawnRequest",
    "Started",
    "classify_spawn_error",
    "require_executable",
]

#: errno values that mean "no process could be created" rather than "the
#: program could not be executed".
_FORK_ERRNOS = frozenset({errno.EAGAIN, errno.ENOMEM, errno.EMFILE,
                          errno.ENFILE, errno.ENOSYS})


def classify_spawn_error(err: OSError) -> str:
    """xinetd's FAIL reason word for a failed spawn: ``fork`` or ``exec``."""
    return REASON_FORK if err.errno in _FORK_ERRNOS else REASON_EXEC


def require_executable(path: str) -> None:
    """
    Raise ``SpawnError(exec)`` unless ``path`` can be executed: for servers
    started through a wrapper (``prlimit``, ``setpriv``), whose own exit
    status 126/127 would otherwise be the only trace of a missing server.
    Racy against someone removing the file at that instant, which then shows
    as the wrapper's exit status as before.
    """
    if not os.access(path, os.X_OK):
        err = errno.EACCES if os.path.exists(path) else errno.ENOENT
        raise SpawnError(REASON_EXEC, OSError(err, os.strerror(err)))


class SpawnError(Exception):
    """A child could not be started; ``reason`` is ``fork`` or ``exec``."""

    def __init__(self, reason: str, err: OSError) -> None:
        super().__init__(reason, err)
        self.reason = reason
        self.errno = err.errno
        self.detail = err.strerror or str(err)


# Not frozen: one is built per connection, and a frozen attrs class's
# __init__ costs three times a plain one's (a setattr call per field).
@attrs.define
class SpawnRequest:
    """Everything needed to start one child (treat it as immutable)."""

    #: Absolute path of the program to execute (no PATH search).
    executable: str
    argv: Tuple[str, ...]
    env: Mapping[str, str]
    #: Child descriptor -> superd descriptor (always include 0, 1 and 2).
    fds: Mapping[int, int]
    credentials: Optional[CredentialPlan] = None
    umask: Optional[int] = None
    #: Absolute nice value for the child.
    nice: Optional[int] = None
    #: The server itself when ``executable`` is a wrapper that execs it
    #: (``prlimit`` for rlimit_*), else None.
    wrapped: Optional[str] = None
    #: The limits of the service's cgroup, given when the child moves itself
    #: into it before executing the server (``superd.proc.cgroups.join_prefix``).
    limits: Optional[Limits] = None


class ISpawner(Interface):
    """Starts children and signals their process groups."""

    def spawn(request: SpawnRequest,
              on_exit: Callable[[ExitStatus], None]) -> int:
        """
        Start ``request`` as a session leader and return its pid, or raise
        ``SpawnError`` synchronously.  ``on_exit(ExitStatus)`` is called once
        when it is reaped -- possibly before ``spawn`` returns.
        """

    def kill_group(pgid: int, signum: int) -> bool:
        """Send ``signum`` to process group ``pgid``; False if it is gone."""


#: What ``IBackgroundSpawner.spawn_in_background`` reports: the pid, or why not.
Started = Callable[[Union[int, SpawnError]], None]


class IBackgroundSpawner(ISpawner):
    """A spawner that can also start children off the reactor thread."""

    def spawns_in_background(request: SpawnRequest) -> bool:
        """Whether ``spawn_in_background`` can start ``request``."""

    def spawn_in_background(request: SpawnRequest, started: Started,
                            on_exit: Callable[[ExitStatus], None]) -> bool:
        """
        Start ``request`` without waiting for the child's exec: later, on the
        reactor thread, ``started(pid)`` or ``started(SpawnError)``; then
        ``on_exit`` once the child is reaped (never before ``started``).  The
        caller may close the request's descriptors as soon as this returns.
        False (and nothing started) when it cannot now: every worker is busy,
        or no descriptor is left to spare; the caller then uses ``spawn``.
        """


#: Seconds between looks at cloned children whose exec is not settled.
SETTLE_INTERVAL = 0.001

#: Children being started off the reactor thread at most (queued or spawning).
MAX_IN_FLIGHT = 64
#: Descriptors left for everything else when copies for the workers are made:
#: a request whose copy would need one of these is spawned on the reactor
#: thread instead.  The limit read is the one in force (``prlimit`` may
#: change it while superd runs).
DESCRIPTOR_RESERVE = 64


def _default_signals() -> frozenset[int]:
    # Every signal the child should find at its default disposition: Python
    # leaves SIGPIPE and SIGXFSZ ignored, and ignored dispositions survive
    # exec.  glibc's child resets the whole set in one pass, so listing all
    # of them costs nothing.
    return frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


class _Call(Protocol):
    """Starts a program from the calling thread (``LibcSpawn`` has this shape)."""

    def __call__(self, executable: str, argv: Tuple[str, ...], env: Mapping[str, str],
                 fds: Mapping[int, int], *, resetids: bool = False) -> int: ...


def _duplicates(fds: Mapping[int, int]) -> Dict[int, int]:
    """``fds`` with each of our descriptors replaced by a new (close-on-exec) copy."""
    copies: Dict[int, int] = {}
    try:
        for ours in set(fds.values()):
            copies[ours] = os.dup(ours)
    except OSError:
        for copy in copies.values():
            os.close(copy)
        raise
    return {child: copies[ours] for child, ours in fds.items()}


@implementer(IBackgroundSpawner)
class PosixSpawner:
    """
    The real spawner: ``os.posix_spawn`` on the calling thread, or glibc's
    through ctypes on a ``SpawnPool`` worker (``spawn_in_background``), plus
    the reaping of the children.
    """

    def __init__(
        self, thread: SpawningThread, *, setpriv: Optional[str] = None,
        posix_spawn: Callable[..., int] = os.posix_spawn,
        reaping: Optional[Reaping] = None,
        register: Callable[[int, object], None] = process.registerReapProcessHandler,
        unregister: Callable[[int, object], None] = process.unregisterReapProcessHandler,
        killpg: Callable[[int, int], None] = os.killpg,
        setpriority: Callable[[int, int, int], None] = os.setpriority,
        pool: Optional[SpawnPool] = None,
        background: Optional[_Call] = None,
        descriptor_limit: Callable[[], int] = lambda: resource.getrlimit(
            resource.RLIMIT_NOFILE)[0],
        exec_wait: Optional[ExecWait] = None,
        clone: Optional[CloneSpawn] = None,
        later: Optional[Callable[..., IDelayedCall]] = None,
    ) -> None:
        """``pool`` and ``background`` (the call the pool's workers make,
        ``superd.proc.libcspawn.LibcSpawn``): both, or no background spawning.
        ``exec_wait``: offer the workers only while it says the waits for
        exec are long (without it, whenever they can take a request).
        ``clone`` and ``later`` (``reactor.callLater``): start children in
        the background without waiting for their exec, from the reactor
        thread (``superd.proc.clonespawn``), instead of the workers."""
        self._thread = thread
        self._setpriv = setpriv
        self._posix_spawn = posix_spawn
        self.reaping = TwistedReaping(register, unregister) if reaping is None else reaping
        self._killpg = killpg
        self._setpriority = setpriority
        self._sigdef = _default_signals()
        self._pool = pool if background is not None else None
        self._background = background
        self._in_flight = 0
        self._descriptor_limit = descriptor_limit
        self._exec_wait = exec_wait
        self._clone = clone if later is not None else None
        self._later = later
        #: Children cloned whose exec is not settled yet: pid -> started.
        self._unsettled: Dict[int, Started] = {}
        #: Cloned children whose exec failed: their exit is nobody's news.
        self._exec_failed: Set[int] = set()
        self._settling: Optional[IDelayedCall] = None

    def spawn(self, request: SpawnRequest,
              on_exit: Callable[[ExitStatus], None]) -> int:
        """See ``ISpawner.spawn``."""
        waits = self._exec_wait
        if waits is None or request.umask is not None:
            # A umask spawn first waits for the workers: not an exec's wait.
            pid = self._spawn_here(request)
        else:
            began = waits.clock()
            pid = self._spawn_here(request)
            waits.waited(waits.clock() - began)
        self.reaping.watch(pid, on_exit)
        return pid

    def _spawn_here(self, request: SpawnRequest) -> int:
        """Start ``request`` from the calling thread; its pid."""
        if (request.credentials is None and request.wrapped is None
                and request.umask is None and request.nice is None):
            # The usual service: nothing to arrange around the spawn.
            fds = request.fds
            env = request.env if type(request.env) is dict else dict(request.env)
            try:
                pid = self._posix_spawn(
                    request.executable, request.argv, env,
                    file_actions=[(os.POSIX_SPAWN_DUP2, fds[child], child)
                                  for child in sorted(fds)],
                    setsid=True, setsigdef=self._sigdef, setsigmask=())
            except OSError as e:
                raise SpawnError(classify_spawn_error(e), e) from e
        elif request.umask is None:
            pid = self._launch(request, self._os_call)
        else:
            pid = self._launch_with_umask(request)
        return pid

    def spawns_in_background(self, request: SpawnRequest) -> bool:
        """See ``IBackgroundSpawner``: with ``clone``, every request whose
        descriptors it can set up; else everything but a umask, which is
        the whole process's (``SpawnPool``), and with an ``ExecWait`` only
        while it says so."""
        clone = self._clone
        if clone is not None and clone.takes(request.fds):
            return True
        if self._pool is None or request.umask is not None:
            return False
        waits = self._exec_wait
        return waits is None or waits.offload()

    def spawn_in_background(self, request: SpawnRequest, started: Started,
                            on_exit: Callable[[ExitStatus], None]) -> bool:
        """See ``IBackgroundSpawner``."""
        if self._clone is not None and self._clone.takes(request.fds):
            self._cloned(request, started, on_exit)
            return True
        pool, call = self._pool, self._background
        assert pool is not None and call is not None, "spawns_in_background said no"
        # Each request in flight holds copies of its descriptors: a bounded
        # number, and never the last ones superd may open (beyond that the
        # reactor thread spawns, which needs no copy).
        if self._in_flight >= MAX_IN_FLIGHT:
            return False
        try:
            fds = _duplicates(request.fds)
        except OSError:
            return False
        if max(fds.values()) >= self._descriptor_limit() - DESCRIPTOR_RESERVE:
            for fd in set(fds.values()):
                os.close(fd)
            return False
        self._in_flight += 1

        def work() -> int:
            try:
                return self._launch(request, call, fds)
            finally:
                for fd in set(fds.values()):
                    os.close(fd)

        def done(outcome: Union[int, BaseException]) -> None:
            self._in_flight -= 1
            if isinstance(outcome, int):
                self.reaping.watch(outcome, on_exit)
                started(outcome)
            elif isinstance(outcome, SpawnError):
                started(outcome)
            else:
                _log.failure("spawning {executable} failed", Failure(outcome),
                             event=events.EV_SPAWN_ERROR, executable=request.executable)
                started(SpawnError(REASON_FORK, OSError(errno.EIO, str(outcome))))

        pool.submit(work, done)
        return True

    def _cloned(self, request: SpawnRequest, started: Started,
                on_exit: Callable[[ExitStatus], None]) -> None:
        """Start ``request`` with ``clone``; ``started`` once its exec is
        settled (``_settle``), ``on_exit`` after that."""
        clone, later = self._clone, self._later
        assert clone is not None and later is not None
        try:
            if request.umask is None:
                pid = self._launch(request, clone)
            else:
                pid = self._launch_with_umask(request, clone)
        except SpawnError as e:
            later(0, started, e)
            return
        self._unsettled[pid] = started
        self.reaping.watch(pid, partial(self._clone_exited, pid, on_exit))
        if self._settling is None:
            self._settling = later(0, self._settle)

    def _settle(self) -> None:
        """Report each cloned child whose exec is settled: started(pid), or
        started(SpawnError) when it could not execute its program; look
        again shortly while any is not."""
        self._settling = None
        assert self._clone is not None and self._later is not None
        unsettled = self._unsettled
        for pid, err in self._clone.settle():
            started = unsettled.pop(pid, None)
            if started is None:
                continue
            outcome: Union[int, SpawnError] = pid
            if err != 0:
                # The child exits with 127 at once; its exit is not reported.
                self._exec_failed.add(pid)
                error = OSError(err, os.strerror(err))
                outcome = SpawnError(classify_spawn_error(error), error)
            try:
                started(outcome)
            except Exception:
                # One child's bookkeeping must not leave the others unreported.
                _log.failure("handling the start of child {pid} failed",
                             event=events.EV_SPAWN_ERROR, pid=pid)
        if unsettled:
            self._settling = self._later(SETTLE_INTERVAL, self._settle)

    def _clone_exited(self, pid: int, on_exit: Callable[[ExitStatus], None],
                      status: ExitStatus) -> None:
        # The kernel settles a child's exec (the block's tid cleared) before
        # its exit can be reaped: settle now, so that started comes first.
        if pid in self._unsettled:
            settling = self._settling
            if settling is not None and settling.active():
                settling.cancel()
            self._settle()
            late = self._unsettled.pop(pid, None)
            if late is not None:
                # Cannot happen (see above); if it did, the child ran.
                late(pid)
        if pid in self._exec_failed:
            self._exec_failed.discard(pid)
            return
        on_exit(status)

    def _os_call(self, executable: str, argv: Tuple[str, ...], env: Mapping[str, str],
                 fds: Mapping[int, int], *, resetids: bool = False) -> int:
        """``os.posix_spawn`` in the shape of ``_Call``."""
        return self._posix_spawn(
            executable, argv, env if type(env) is dict else dict(env),
            file_actions=[(os.POSIX_SPAWN_DUP2, fds[child], child) for child in sorted(fds)],
            setsid=True, setsigdef=self._sigdef, setsigmask=(), resetids=resetids)

    def _launch(self, request: SpawnRequest, call: _Call,
                fds: Optional[Mapping[int, int]] = None) -> int:
        """Start ``request`` from the calling thread with ``call``, seeing to
        its credentials, wrapper and nice value (not its umask); ``fds``
        instead of the request's own descriptors if given."""
        executable, argv, plan, thread_nice = self.prepare(request)
        env = request.env
        if fds is None:
            fds = request.fds
        try:
            if plan is None and thread_nice is None:
                pid = call(executable, argv, env, fds)
            else:
                # resetids: the thread holds the user's ids as its real ids
                # only (superd.proc.credentials); the child makes them effective.
                pid = self._thread.run_as(plan, thread_nice, lambda: call(
                    executable, argv, env, fds, resetids=plan is not None))
        except OSError as e:
            raise SpawnError(classify_spawn_error(e), e) from e
        self.started(request, pid, thread_nice)
        return pid

    def prepare(self, request: SpawnRequest) -> Tuple[
            str, Tuple[str, ...], Optional[CredentialPlan], Optional[int]]:
        """
        What to start for ``request`` and how: the executable and argv (with
        a ``setpriv`` prefix when the spawning thread cannot take the
        credentials), the credentials and the nice value the spawning
        thread must take (None: none).  Raises ``SpawnError(exec)`` when
        the server behind a wrapper cannot be executed.
        """
        executable, argv = request.executable, request.argv
        plan = request.credentials
        if request.wrapped is not None:
            require_executable(request.wrapped)
        if plan is not None and not self._thread.can_switch:
            require_executable(executable)
            executable, argv = self._wrapped(plan, executable, argv)
            plan = None
        thread_nice = request.nice if self._thread.can_switch else None
        return executable, argv, plan, thread_nice

    def started(self, request: SpawnRequest, pid: int, thread_nice: Optional[int]) -> None:
        """``request`` started as ``pid``, its thread having taken
        ``thread_nice``: give it its nice value if that did not."""
        if request.nice is not None and thread_nice is None:
            self._renice(pid, request.nice)

    def _launch_with_umask(self, request: SpawnRequest, call: Optional[_Call] = None) -> int:
        # The umask belongs to the whole process: set around this spawn, on
        # the reactor thread (the only one creating files), while no worker
        # is spawning a child that would inherit it.
        quiet = self._pool.quiet() if self._pool is not None else contextlib.nullcontext()
        with quiet:
            assert request.umask is not None
            old = os.umask(request.umask)
            try:
                return self._launch(request, self._os_call if call is None else call)
            finally:
                os.umask(old)

    def _wrapped(self, plan: CredentialPlan, executable: str,
                 argv: Tuple[str, ...]) -> Tuple[str, Tuple[str, ...]]:
        if self._setpriv is None:
            raise SpawnError(REASON_EXEC, OSError(
                errno.ENOSYS, "cannot change credentials: setpriv not found"))
        # setpriv execs its first operand with itself as argv[0], so the
        # server sees its full path as argv[0] on this fallback path.
        prefix = setpriv_prefix(plan, self._setpriv)
        return prefix[0], (*prefix, executable, *argv[1:])

    def _renice(self, pid: int, nice: int) -> None:
        # Not root and asked to raise priority: EACCES, and the child keeps
        # superd's niceness, which is what it would have had anyway.
        with contextlib.suppress(OSError):
            self._setpriority(os.PRIO_PROCESS, pid, nice)

    def kill_group(self, pgid: int, signum: int) -> bool:
        """See ``ISpawner.kill_group``."""
        try:
            self._killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

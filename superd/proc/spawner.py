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

Per-child settings and how they reach the child without leaving the fast path:

* credentials: the spawning thread takes them (``superd.proc.credentials``),
  or, where that is unavailable, a ``setpriv`` argv prefix;
* nice: per-thread as well when superd is root (race-free); otherwise
  ``setpriority`` on the child right after it started: not race-free (the
  child runs for microseconds at superd's priority), which is harmless for a
  scheduling hint;
* umask: superd's umask is set around the synchronous spawn.  The umask is
  process-wide, so for those microseconds another thread creating a file would
  see it; superd creates files only from the reactor thread, which is busy
  spawning;
* rlimits: per process, so no thread trick; ``prlimit`` after the spawn would
  leave a window where the server runs (and may fork) unlimited, so they are
  set by a ``prlimit`` argv prefix (``superd.handlers.spawn.argv.limits_prefix``),
  race-free at the price of one more exec, for services that ask.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from typing import Callable, Mapping, Optional, Tuple, Union

import attrs
from twisted.internet import process
from zope.interface import Interface, implementer

from superd.observe.events import REASON_EXEC, REASON_FORK
from superd.proc.cgroups import Limits
from superd.proc.credentials import CredentialPlan, SpawningThread, setpriv_prefix
from superd.proc.reaping import ExitReaping, ExitStatus, TwistedReaping

#: Either watcher in ``superd.proc.reaping``.
Reaping = Union[ExitReaping, TwistedReaping]

__all__ = [
    "ExitStatus",
    "ISpawner",
    "PosixSpawner",
    "Reaping",
    "SpawnError",
    "SpawnRequest",
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


def _default_signals() -> frozenset[int]:
    # Every signal the child should find at its default disposition: Python
    # leaves SIGPIPE and SIGXFSZ ignored, and ignored dispositions survive
    # exec.  glibc's child resets the whole set in one pass, so listing all
    # of them costs nothing.
    return frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


@implementer(ISpawner)
class PosixSpawner:
    """The real spawner: ``os.posix_spawn`` plus Twisted's reaping."""

    def __init__(
        self, thread: SpawningThread, *, setpriv: Optional[str] = None,
        posix_spawn: Callable[..., int] = os.posix_spawn,
        reaping: Optional[Reaping] = None,
        register: Callable[[int, object], None] = process.registerReapProcessHandler,
        unregister: Callable[[int, object], None] = process.unregisterReapProcessHandler,
        killpg: Callable[[int, int], None] = os.killpg,
        setpriority: Callable[[int, int, int], None] = os.setpriority,
    ) -> None:
        self._thread = thread
        self._setpriv = setpriv
        self._posix_spawn = posix_spawn
        self.reaping = TwistedReaping(register, unregister) if reaping is None else reaping
        self._killpg = killpg
        self._setpriority = setpriority
        self._sigdef = _default_signals()

    def spawn(self, request: SpawnRequest,
              on_exit: Callable[[ExitStatus], None]) -> int:
        """See ``ISpawner.spawn``."""
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
        else:
            pid = self._spawn_arranged(request)
        self.reaping.watch(pid, on_exit)
        return pid

    def _spawn_arranged(self, request: SpawnRequest) -> int:
        # Credentials, a wrapper, a umask or a nice value to see to.
        executable, argv = request.executable, request.argv
        plan = request.credentials
        if request.wrapped is not None:
            require_executable(request.wrapped)
        if plan is not None and not self._thread.can_switch:
            require_executable(executable)
            executable, argv = self._wrapped(plan, executable, argv)
            plan = None
        thread_nice = request.nice if self._thread.can_switch else None
        actions = [(os.POSIX_SPAWN_DUP2, parent, child)
                   for child, parent in sorted(request.fds.items())]

        env = request.env if type(request.env) is dict else dict(request.env)

        def action() -> int:
            return self._posix_spawn(
                executable, argv, env,
                file_actions=actions, setsid=True, setsigdef=self._sigdef,
                setsigmask=())

        pid = self._with_umask(request.umask, plan, thread_nice, action)
        if request.nice is not None and thread_nice is None:
            self._renice(pid, request.nice)
        return pid

    def _wrapped(self, plan: CredentialPlan, executable: str,
                 argv: Tuple[str, ...]) -> Tuple[str, Tuple[str, ...]]:
        if self._setpriv is None:
            raise SpawnError(REASON_EXEC, OSError(
                errno.ENOSYS, "cannot change credentials: setpriv not found"))
        # setpriv execs its first operand with itself as argv[0], so the
        # server sees its full path as argv[0] on this fallback path.
        prefix = setpriv_prefix(plan, self._setpriv)
        return prefix[0], (*prefix, executable, *argv[1:])

    def _with_umask(self, umask: Optional[int], plan: Optional[CredentialPlan],
                    nice: Optional[int], action: Callable[[], int]) -> int:
        old = None if umask is None else os.umask(umask)
        try:
            if plan is None and nice is None:
                return action()
            return self._thread.run_as(plan, nice, action)
        except OSError as e:
            raise SpawnError(classify_spawn_error(e), e) from e
        finally:
            if old is not None:
                os.umask(old)

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

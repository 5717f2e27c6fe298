"""
Learning that a child ended, and how: two interchangeable watchers.

``TwistedReaping`` registers each child with Twisted's SIGCHLD machinery
(``registerReapProcessHandler``).  On every SIGCHLD Twisted calls
``waitpid(pid, WNOHANG)`` for *every* registered child: measured 0.8 ms per
SIGCHLD with 1,000 children running (long ssh sessions, say), so at a few
hundred short connections a second the reactor would spend half its time
asking children that are still alive.

``PidfdReaping`` (Linux >= 5.3) opens a pidfd per child: the pidfd becomes
readable when that child exits, and only that child is reaped.  The pidfds
sit in one private epoll set that the reactor polls as a single reader, so a
child costs a few system calls (open, epoll add/del, waitpid, close) and no
reactor bookkeeping, whatever the number of children; a burst of exits is
one reactor event.  The pidfd is close-on-exec, so it never
reaches another child.  Where ``pidfd_open`` is missing or refused, it falls
back to ``TwistedReaping`` for good.  A pidfd is one descriptor per running
child, so at most a quarter of superd's descriptor limit is spent on them
(accepting connections needs the rest); children beyond that, or started when
descriptors run out, are reaped through SIGCHLD instead.
"""

from __future__ import annotations

import errno
import os
import resource
import select
from typing import Any, Callable, Dict, Optional, Tuple

import attrs
from twisted.internet import process
from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["ExitStatus", "PidfdReaping", "TwistedReaping"]

OnExit = Callable[["ExitStatus"], None]


@attrs.frozen
class ExitStatus:
    """How a child ended, decoded from its ``waitpid`` status."""

    #: The raw wait status (None if the child was reaped by someone else).
    raw: Optional[int]
    code: Optional[int] = None
    signal: Optional[int] = None
    core: bool = False

    @classmethod
    def from_raw(cls, raw: Optional[int]) -> "ExitStatus":
        """Decode ``raw`` as ``os.waitpid`` returned it."""
        if raw is None:
            return cls(None)
        if os.WIFSIGNALED(raw):
            return cls(raw, None, os.WTERMSIG(raw), os.WCOREDUMP(raw))
        return cls(raw, os.WEXITSTATUS(raw))


def _reap(pid: int) -> "Optional[ExitStatus]":
    """The child's status if it has ended (reaping it), else None."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return ExitStatus.from_raw(None)  # someone else reaped it
    return ExitStatus.from_raw(status) if reaped else None


class _TwistedReaper:
    """What ``twisted.internet.process.reapAllProcesses`` calls, per child."""

    def __init__(self, pid: int, on_exit: OnExit,
                 unregister: Callable[[int, object], None]) -> None:
        self.pid = pid
        self._on_exit = on_exit
        self._unregister = unregister

    def reapProcess(self) -> None:
        status = _reap(self.pid)
        if status is not None:
            self._unregister(self.pid, self)
            self._on_exit(status)

    def processEnded(self, status: int) -> None:
        # Called by registerReapProcessHandler if the child had already ended.
        self._on_exit(ExitStatus.from_raw(status))


class TwistedReaping:
    """Children reaped by Twisted's SIGCHLD handler (O(children) per signal)."""

    name = "sigchld"

    def __init__(
        self,
        register: Callable[[int, object], None] = process.registerReapProcessHandler,
        unregister: Callable[[int, object], None] = process.unregisterReapProcessHandler,
    ) -> None:
        self._register = register
        self._unregister = unregister

    def watch(self, pid: int, on_exit: OnExit) -> None:
        """Call ``on_exit`` once ``pid`` has been reaped."""
        self._register(pid, _TwistedReaper(pid, on_exit, self._unregister))


@implementer(IReadDescriptor)
class _ExitPoller:
    """
    The reactor's one reader for every pidfd: a private epoll set holding
    them, readable (epoll nests) when any child has ended.
    """

    def __init__(self, reaping: "PidfdReaping", poller: Any) -> None:
        self._reaping = reaping
        self.poller = poller

    def fileno(self) -> int:
        return int(self.poller.fileno())

    def logPrefix(self) -> str:
        return "child exits"

    def doRead(self) -> None:
        self._reaping.reap_ended()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor is shutting down with children still running.
        self._reaping.close()


class PidfdReaping:
    """Children reaped when their pidfd becomes readable (O(1) per exit)."""

    name = "pidfd"

    def __init__(self, reactor: Any,
                 pidfd_open: Optional[Callable[[int], int]] = getattr(os, "pidfd_open", None),
                 fallback: Optional[TwistedReaping] = None,
                 budget: Optional[Callable[[], int]] = None,
                 poller: Callable[[], Any] = select.epoll) -> None:
        self._reactor = reactor
        self._pidfd_open = pidfd_open
        self._fallback = TwistedReaping() if fallback is None else fallback
        # Asked per child: an operator (or prlimit) may lower superd's
        # descriptor limit while it runs, and accepting needs the rest.
        self._budget = _quarter_of_nofile if budget is None else budget
        self._new_poller = poller
        self._reader: Optional[_ExitPoller] = None
        #: pidfd -> (pid, on_exit) of every child watched here.
        self._watched: Dict[int, Tuple[int, OnExit]] = {}
        if pidfd_open is not None:
            self._poller()  # one descriptor for good, from the start

    @property
    def open(self) -> int:
        """pidfds currently open."""
        return len(self._watched)

    def watch(self, pid: int, on_exit: OnExit) -> None:
        """Call ``on_exit`` once ``pid`` has been reaped."""
        fd = self._open_pidfd(pid)
        if fd is None:
            self._fallback.watch(pid, on_exit)
            return
        try:
            self._poller().register(fd, select.EPOLLIN)
        except OSError:
            os.close(fd)
            self._fallback.watch(pid, on_exit)
            return
        self._watched[fd] = (pid, on_exit)

    def _poller(self) -> Any:
        # Registered with the reactor for good: per child only the private
        # set changes (no reactor bookkeeping, and one reactor event for a
        # burst of exits).  Made again if the reactor stopped and restarted.
        if self._reader is None:
            self._reader = _ExitPoller(self, self._new_poller())
            self._reactor.addReader(self._reader)
        return self._reader.poller

    def _open_pidfd(self, pid: int) -> Optional[int]:
        if self._pidfd_open is None or len(self._watched) >= self._budget():
            return None
        try:
            return self._pidfd_open(pid)
        except OSError as e:
            if e.errno in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
                self._pidfd_open = None  # this kernel cannot: stop trying
            return None  # EMFILE, ENFILE, ENOMEM: this child only

    def reap_ended(self) -> None:
        """Reap every watched child that has ended and report it."""
        if self._reader is None:
            return
        poller = self._reader.poller
        for fd, _ in poller.poll(0):
            pid, on_exit = self._watched[fd]
            status = _reap(pid)
            if status is None:
                continue  # not over yet (cannot happen for a single-threaded exit)
            poller.unregister(fd)
            os.close(fd)
            del self._watched[fd]
            on_exit(status)

    def close(self) -> None:
        """Drop every pidfd and the private set (the reactor is stopping)."""
        for fd in self._watched:
            os.close(fd)
        self._watched.clear()
        if self._reader is not None:
            self._reactor.removeReader(self._reader)
            self._reader.poller.close()
            self._reader = None


def _quarter_of_nofile() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return (1 << 20) if soft == resource.RLIM_INFINITY else soft // 4
